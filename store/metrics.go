package store

import (
	"context"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/flywheel-oss/flywheel"
)

type metricRow struct {
	Key           string `gorm:"primaryKey"`
	Name          string
	Description   string
	Type          string
	Event         string
	Numerator     string
	Denominator   string
	WindowHours   int
	FromHours     int
	ToHours       int
	CupedHours    int
	Direction     string
	CapValue      *float64
	CapPercentile *float64
	CreatedAt     time.Time
	UpdatedAt     time.Time
}

func (metricRow) TableName() string { return "metrics" }

func toMetricRow(m *flywheel.Metric) *metricRow {
	r := &metricRow{
		Key: m.Key, Name: m.Name, Description: m.Description, Type: string(m.Type), Event: m.Event,
		Numerator: m.Numerator, Denominator: m.Denominator, WindowHours: m.WindowHours,
		FromHours: m.FromHours, ToHours: m.ToHours, CupedHours: m.CUPEDHours,
		Direction: string(m.Direction), CreatedAt: m.CreatedAt, UpdatedAt: m.UpdatedAt,
	}
	if m.Cap != nil {
		r.CapValue, r.CapPercentile = m.Cap.Value, m.Cap.Percentile
	}
	return r
}

func (r *metricRow) toDomain() *flywheel.Metric {
	m := &flywheel.Metric{
		Key: r.Key, Name: r.Name, Description: r.Description, Type: flywheel.MetricType(r.Type),
		Event: r.Event, Numerator: r.Numerator, Denominator: r.Denominator, WindowHours: r.WindowHours,
		FromHours: r.FromHours, ToHours: r.ToHours, CUPEDHours: r.CupedHours,
		Direction: flywheel.Direction(r.Direction), CreatedAt: r.CreatedAt.UTC(), UpdatedAt: r.UpdatedAt.UTC(),
	}
	if r.CapValue != nil || r.CapPercentile != nil {
		m.Cap = &flywheel.Cap{Value: r.CapValue, Percentile: r.CapPercentile}
	}
	return m
}

// CreateMetric stores a new, validated metric; conflict if the key exists.
func (db *DB) CreateMetric(ctx context.Context, m *flywheel.Metric) (*flywheel.Metric, error) {
	out := *m
	now := db.now()
	out.CreatedAt, out.UpdatedAt = now, now
	if err := db.gorm.WithContext(ctx).Create(toMetricRow(&out)).Error; err != nil {
		if _, ok := isPgCode(err, pgUniqueViolation); ok {
			return nil, &flywheel.Error{Code: flywheel.CodeConflict, Field: "key", Message: "metric " + quote(m.Key) + " already exists"}
		}
		return nil, translate("create metric", err)
	}
	return &out, nil
}

// FindMetricByKey returns one metric or not_found.
func (db *DB) FindMetricByKey(ctx context.Context, key string) (*flywheel.Metric, error) {
	var row metricRow
	if err := db.gorm.WithContext(ctx).Take(&row, "key = ?", key).Error; err != nil {
		if errIsNotFound(err) {
			return nil, flywheel.Errorf(flywheel.CodeNotFound, "metric %q not found", key)
		}
		return nil, translate("find metric", err)
	}
	return row.toDomain(), nil
}

// ListMetrics returns a page of metrics ordered by key.
func (db *DB) ListMetrics(ctx context.Context, limit int, cursor string) (flywheel.Page[flywheel.Metric], error) {
	var page flywheel.Page[flywheel.Metric]
	limit = clampLimit(limit)
	q := db.gorm.WithContext(ctx).Order("key").Limit(limit + 1)
	if cursor != "" {
		after, err := decodeCursor(cursor)
		if err != nil {
			return page, err
		}
		q = q.Where("key > ?", after)
	}
	var rows []metricRow
	if err := q.Find(&rows).Error; err != nil {
		return page, translate("list metrics", err)
	}
	page.Items = make([]flywheel.Metric, 0, len(rows))
	for i := range rows {
		if i == limit {
			page.NextCursor = encodeCursor(rows[i-1].Key)
			break
		}
		page.Items = append(page.Items, *rows[i].toDomain())
	}
	return page, nil
}

// UpdateMetric applies mutate to the metric under a row lock and stores it.
func (db *DB) UpdateMetric(ctx context.Context, key string, mutate func(*flywheel.Metric) error) (*flywheel.Metric, error) {
	var out *flywheel.Metric
	err := db.tx(ctx, func(tx *gorm.DB) error {
		var row metricRow
		if err := tx.Clauses(clause.Locking{Strength: "UPDATE"}).Take(&row, "key = ?", key).Error; err != nil {
			if errIsNotFound(err) {
				return flywheel.Errorf(flywheel.CodeNotFound, "metric %q not found", key)
			}
			return err
		}
		m := row.toDomain()
		if err := mutate(m); err != nil {
			return err
		}
		m.Key, m.CreatedAt, m.UpdatedAt = key, row.CreatedAt.UTC(), db.now()
		out = m
		return tx.Select("*").Omit("created_at").Save(toMetricRow(m)).Error
	})
	if err != nil {
		return nil, translate("update metric", err)
	}
	return out, nil
}

// MetricsExist returns which of keys are defined metrics.
func (db *DB) MetricsExist(ctx context.Context, keys []string) (map[string]bool, error) {
	out := make(map[string]bool, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	var found []string
	if err := db.gorm.WithContext(ctx).Model(&metricRow{}).Where("key IN ?", keys).Pluck("key", &found).Error; err != nil {
		return nil, translate("find metrics", err)
	}
	for _, k := range found {
		out[k] = true
	}
	return out, nil
}

// FindMetricsByKeys returns the defined metrics among keys, in key order.
func (db *DB) FindMetricsByKeys(ctx context.Context, keys []string) ([]flywheel.Metric, error) {
	var rows []metricRow
	if err := db.gorm.WithContext(ctx).Where("key IN ?", keys).Order("key").Find(&rows).Error; err != nil {
		return nil, translate("find metrics", err)
	}
	out := make([]flywheel.Metric, len(rows))
	for i := range rows {
		out[i] = *rows[i].toDomain()
	}
	return out, nil
}

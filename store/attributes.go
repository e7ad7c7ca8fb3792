package store

import (
	"context"

	"github.com/flywheel-oss/flywheel"
)

// exposureAttributes counts the attribute names of the first $2 exposures
// of experiment $1 in unit order (the primary key's), most common first,
// and says how many exposures it read.
const exposureAttributes = `
WITH s AS MATERIALIZED (
    SELECT attributes FROM exposures WHERE experiment = $1 ORDER BY unit_id LIMIT $2
), k AS (
    SELECT key, count(*) AS units FROM s CROSS JOIN LATERAL jsonb_object_keys(s.attributes) key
    WHERE jsonb_typeof(s.attributes) = 'object' GROUP BY key
)
SELECT (SELECT count(*) FROM s),
       coalesce((SELECT array_agg(key ORDER BY units DESC, key) FROM k), '{}'),
       coalesce((SELECT array_agg(units ORDER BY units DESC, key) FROM k), '{}')`

// ExposureAttributes returns the attribute names that the exposures of
// experiment key carry, most common first, read from at most sample of its
// units' first exposures (the first in unit id order: a sample that does
// not depend on when units arrived), and how many it read. It does not
// check that the experiment exists.
func (db *DB) ExposureAttributes(ctx context.Context, key string, sample int) ([]flywheel.ExposureAttribute, int64, error) {
	var read int64
	var names []string
	var units []int64
	if err := db.pool.QueryRow(ctx, exposureAttributes, key, sample).Scan(&read, &names, &units); err != nil {
		return nil, 0, translate("exposure attributes", err)
	}
	out := make([]flywheel.ExposureAttribute, len(names))
	for i := range names {
		out[i] = flywheel.ExposureAttribute{Name: names[i], Units: units[i]}
	}
	return out, read, nil
}

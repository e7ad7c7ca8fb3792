package flywheel

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/flywheel-oss/flywheel/assign"
)

// Audience is a saved targeting condition that experiments reference by
// key ({"$audience": "high-value-fr"}) instead of repeating it. Its key
// never changes; archiving hides it and forbids new references.
type Audience struct {
	Key  string `json:"key"`
	Name string `json:"name"`
	// Condition is in the targeting syntax and may reference other
	// audiences; {} matches everyone.
	Condition  json.RawMessage `json:"condition"`
	CreatedAt  time.Time       `json:"created_at"`
	UpdatedAt  time.Time       `json:"updated_at"`
	ArchivedAt *time.Time      `json:"archived_at,omitempty"`
	// UsedBy is set by GET /v1/audiences/{key} only: who references it.
	UsedBy *AudienceUsers `json:"used_by,omitempty"`
}

// AudienceUsers names what references an audience, directly or through
// other audiences: the experiments that are not archived and the live
// audiences. An audience with users cannot be archived.
type AudienceUsers struct {
	Experiments []string `json:"experiments"`
	Audiences   []string `json:"audiences"`
}

// MaxLiveAudiences bounds the audiences that are not archived: every
// experiment validation and every configuration build reads them.
const MaxLiveAudiences = 1000

// Archived reports whether the audience is archived.
func (a *Audience) Archived() bool { return a.ArchivedAt != nil }

// Validate checks an audience definition and reports every problem at
// once. others are the audiences its condition may reference (the
// audience's own key among them is replaced by its new condition, so that
// a cycle through it is found).
func (a *Audience) Validate(others assign.Audiences) error {
	var p Problems
	if !keyPattern.MatchString(a.Key) {
		p.Add("key", "key must match ^[a-z0-9][a-z0-9_.-]{0,63}$")
	}
	if strings.TrimSpace(a.Name) == "" {
		p.Add("name", "name is required")
	} else if len(a.Name) > 200 {
		p.Add("name", "name must be at most 200 characters")
	}
	switch {
	case len(a.Condition) == 0:
		p.Add("condition", "condition is required (a condition object in the targeting syntax; {} matches everyone)")
	case len(a.Condition) > MaxTargetingBytes:
		p.Add("condition", "condition must be at most %d bytes of JSON, got %d", MaxTargetingBytes, len(a.Condition))
	default:
		with := make(assign.Audiences, len(others)+1)
		for k, v := range others {
			with[k] = v
		}
		with[a.Key] = a.Condition
		if _, err := assign.ParseAudience(a.Key, with); err != nil {
			addConditionProblem(&p, "condition", "invalid audience condition", err)
		} else if trimmed := strings.TrimSpace(string(a.Condition)); trimmed == "null" || !strings.HasPrefix(trimmed, "{") {
			p.Add("condition", "condition must be a JSON object ({} matches everyone)")
		}
	}
	return p.Err()
}

// addConditionProblem records a condition error with its field path
// (rooted at root) and a message that starts with what.
func addConditionProblem(p *Problems, root, what string, err error) {
	var ce *assign.ConditionError
	if !errors.As(err, &ce) {
		p.Add(root, "%s: %v", what, err)
		return
	}
	field := ce.Path
	if root == "targeting" {
		field = conditionField(ce.Path)
	}
	p.Add(field, "%s: %s", what, ce.Msg)
}

// AudiencePatch is the body of PATCH /v1/audiences/{key}: the fields to
// change; a field left out keeps its value.
type AudiencePatch struct {
	Name      *string         `json:"name"`
	Condition json.RawMessage `json:"condition"`
}

// Apply changes a as the patch says. It does not validate the result.
func (p *AudiencePatch) Apply(a *Audience) {
	if p.Name != nil {
		a.Name = *p.Name
	}
	if len(p.Condition) > 0 {
		a.Condition = p.Condition
	}
}

// AudienceChange is the answer to a change of an audience: the audience
// and the keys of the running experiments whose targeting uses it,
// directly or through other audiences (their assignments follow the new
// condition from the next SDK config on).
type AudienceChange struct {
	Audience
	AffectedExperiments []string `json:"affected_experiments"`
}

// AudienceFilter selects a page of audiences.
type AudienceFilter struct {
	// Archived lists the archived audiences too.
	Archived bool
	Limit    int
	Cursor   string
}

// AudienceStore keeps saved audiences and their audit log.
type AudienceStore interface {
	// CreateAudience stores a new audience, validating it against the
	// stored ones in the same transaction.
	CreateAudience(ctx context.Context, a *Audience, actor string) (*Audience, error)
	FindAudienceByKey(ctx context.Context, key string) (*Audience, error)
	// AudienceUsage names the experiments (not archived) and the live
	// audiences that use audience key, directly or not.
	AudienceUsage(ctx context.Context, key string) (*AudienceUsers, error)
	ListAudiences(ctx context.Context, f AudienceFilter) (Page[Audience], error)
	// UpdateAudience applies p under a row lock, validates the result
	// against the other audiences, and stores it with an audit row that
	// names the running experiments it affects.
	UpdateAudience(ctx context.Context, key string, p AudiencePatch, actor string) (*AudienceChange, error)
	// ArchiveAudience archives an audience; one that an experiment that is
	// not archived, or another audience that is not archived, uses is
	// refused with a conflict naming them.
	ArchiveAudience(ctx context.Context, key, actor string) (*Audience, error)
	AudienceHistory(ctx context.Context, key string, limit int, cursor string) (Page[HistoryEntry], error)
	// LiveAudiences returns the condition of every audience that is not
	// archived, by key: what a new reference may name.
	LiveAudiences(ctx context.Context) (assign.Audiences, error)
	// AllAudiences is LiveAudiences with the archived ones too.
	AllAudiences(ctx context.Context) (assign.Audiences, error)
}

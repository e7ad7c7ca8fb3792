package flywheel

// ExposureAttribute is an attribute name that an experiment's exposures
// carry (Event.Attributes), with the number of units, of those read, whose
// first exposure carries it.
type ExposureAttribute struct {
	Name  string `json:"name"`
	Units int64  `json:"units"`
}

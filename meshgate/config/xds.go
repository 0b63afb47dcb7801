package config

// XDS configures the embedded xDS control plane (package xds). Owned by the
// xds work; the data path ignores it.
type XDS struct {
	// Address the ADS server listens on: host:port or unix:/path.
	Address string `yaml:"address" json:"address"`
}

func (x *XDS) applyDefaults() {}

func (x *XDS) validate(c *Config, e *errs) {
	checkAddr(e, "xds.address", x.Address)
}

package config

import (
	"errors"
	"path/filepath"
)

func joinErrs(e errs) error { return errors.Join(e...) }

func dirOf(path string) string { return filepath.Dir(path) }

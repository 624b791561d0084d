package worker

import (
	"errors"
	"fmt"
)

// ErrConfig: a worker's, an exec contract's or a process pool's
// configuration is invalid; the error text names the field.
var ErrConfig = errors.New("worker: invalid configuration")

func configError(field, format string, args ...any) error {
	return fmt.Errorf("%w: %s %s", ErrConfig, field, fmt.Sprintf(format, args...))
}

package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"go.yaml.in/yaml/v3"
)

// decodeYAML decodes one YAML document from path into v, substituting
// the environment (expandNode) and refusing unknown fields.
func decodeYAML(path string, v any, env lookupEnv) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: read %s: %w", path, err)
	}
	return decodeBytes(path, data, v, env)
}

// decodeBytes is decodeYAML for the contents of the file called name.
func decodeBytes(name string, data []byte, v any, env lookupEnv) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrConfig, name, err)
	}
	if doc.Kind == 0 {
		return fmt.Errorf("%w: %s is empty", ErrConfig, name)
	}
	if err := expandNode(&doc, "", env); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	// yaml.Node.Decode cannot refuse unknown fields: decode the
	// substituted document again through a Decoder that does.
	expanded, err := yaml.Marshal(&doc)
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrConfig, name, err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(expanded))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("%w: %s is empty", ErrConfig, name)
		}
		return fmt.Errorf("%w: %s: %w", ErrConfig, name, err)
	}
	return nil
}

// readSecret sets *value from file when file is set: exactly one of the
// two fields must be given. A trailing newline of the file is dropped.
func readSecret(value *string, file, field, fileField string) error {
	switch {
	case *value != "" && file != "":
		return configError(fileField, "and %s are both set; give one", field)
	case file == "" && *value == "":
		return configError(field, "is required (or %s)", fileField)
	case file == "":
		return nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return configError(fileField, "%v", err)
	}
	v := strings.TrimRight(string(b), "\r\n")
	if v == "" {
		return configError(fileField, "%s is empty", file)
	}
	*value = v
	return nil
}

// ErrConfig: a configuration file is invalid; the error text names the
// YAML field. The Prime fields of a gateway's file are checked by
// gateway.PrimeConfig.Validate, whose errors wrap gateway.ErrConfig.
var ErrConfig = errors.New("config: invalid configuration")

// primeError is an error of the Prime fields: its text is
// gateway.PrimeConfig.Validate's, and it is both gateway.ErrConfig and
// ErrConfig.
type primeError struct{ error }

func (e primeError) Unwrap() []error { return []error{e.error, ErrConfig} }

func configError(field, format string, args ...any) error {
	return fmt.Errorf("%w: %s %s", ErrConfig, field, fmt.Sprintf(format, args...))
}

// DecodeGateway decodes a gateway configuration as LoadGateway does,
// with env for the environment, but without Validate: nothing is
// defaulted, expanded or read from the files it names. It lets a test
// check a configuration meant for another machine (a Kubernetes pod's).
func DecodeGateway(data []byte, env func(string) (string, bool)) (*Gateway, error) {
	cfg := new(Gateway)
	return cfg, decodeBytes("gateway configuration", data, cfg, env)
}

// DecodeWorker is DecodeGateway for a worker's configuration.
func DecodeWorker(data []byte, env func(string) (string, bool)) (*Worker, error) {
	cfg := new(Worker)
	return cfg, decodeBytes("worker configuration", data, cfg, env)
}

// ExpandHosts expands the ellipsis form of a hosts list, as Validate
// does.
func ExpandHosts(hosts []string) ([]string, error) { return expandHosts(hosts) }

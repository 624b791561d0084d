package config

import (
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Environment variables in a configuration file: every scalar value (not
// the keys) may hold ${NAME}, replaced by the variable's value, or
// ${NAME:-default}, replaced by the default when NAME is unset or empty;
// $$ stands for a literal $. An unset variable without a default is an
// error naming the field. Values are substituted into the parsed
// document, never into its text, so a value cannot change the file's
// structure; a plain (unquoted) scalar is typed after the substitution
// (capacity: ${CAPACITY} is a number).

// lookupEnv is how a variable is read (os.LookupEnv; tests replace it).
type lookupEnv func(string) (string, bool)

// expandNode substitutes the environment into every scalar value under n.
// path is n's field path, for errors.
func expandNode(n *yaml.Node, path string, env lookupEnv) error {
	switch n.Kind {
	case yaml.DocumentNode, yaml.SequenceNode:
		for i, c := range n.Content {
			p := path
			if n.Kind == yaml.SequenceNode {
				p = fmt.Sprintf("%s[%d]", path, i)
			}
			if err := expandNode(c, p, env); err != nil {
				return err
			}
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			p := n.Content[i].Value
			if path != "" {
				p = path + "." + p
			}
			if err := expandNode(n.Content[i+1], p, env); err != nil {
				return err
			}
		}
	case yaml.ScalarNode:
		if !strings.Contains(n.Value, "$") {
			return nil
		}
		v, err := expandEnv(n.Value, env)
		if err != nil {
			return configError(path, "%v", err)
		}
		n.Value = v
		if n.Style == 0 || n.Style == yaml.FlowStyle {
			n.Tag = "" // typed from the substituted text
		}
	}
	return nil
}

// expandEnv substitutes ${NAME} and ${NAME:-default} in s, and $$.
func expandEnv(s string, env lookupEnv) (string, error) {
	var b strings.Builder
	for {
		i := strings.IndexByte(s, '$')
		if i < 0 || i == len(s)-1 {
			b.WriteString(s)
			return b.String(), nil
		}
		b.WriteString(s[:i])
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			s = s[i+2:]
			continue
		case '{':
		default:
			b.WriteByte('$') // a lone $ stays
			s = s[i+1:]
			continue
		}
		end := strings.IndexByte(s[i:], '}')
		if end < 0 {
			return "", fmt.Errorf("unclosed ${ in %q", s[i:])
		}
		expr := s[i+2 : i+end]
		name, def, hasDef := strings.Cut(expr, ":-")
		if !validEnvName(name) {
			return "", fmt.Errorf("${%s}: %q is not an environment variable name", expr, name)
		}
		v, ok := env(name)
		switch {
		case hasDef && v == "":
			v = def
		case !ok:
			return "", fmt.Errorf("environment variable %s is not set (write ${%s:-default} for a default)", name, name)
		}
		b.WriteString(v)
		s = s[i+end+1:]
	}
}

func validEnvName(s string) bool {
	if s == "" || (s[0] >= '0' && s[0] <= '9') {
		return false
	}
	for _, c := range s {
		if c != '_' && (c < 'A' || c > 'Z') && (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

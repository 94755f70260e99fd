package config

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
)

// Parse fills v, a pointer to a struct that already holds its defaults,
// from the environment variables its fields' `env:"NAME"` tags name,
// nested structs included. An unset or empty variable keeps the field's
// value, so the defaults are written once, in the struct v starts from.
//
// Values are read as: durations, a Go duration ("10s") or whole seconds
// ("10", the form of OpenFaaS's exec_timeout); integers; booleans (true,
// false, 1, 0, yes, no); a Rate ("10/15m" or "off"); a list of strings
// ("a, b"); a per-name map ("login=5s,gen-avatar=30s"), whose int values
// must be positive counts. The error names every bad variable, sorted:
//
//	$WS_IDLE_TIMEOUT: not a duration: "soon"
//
// This package is the only one in tidings that reads the environment:
// each binary parses its root configuration struct once, at start, and
// passes plain structs down.
func Parse(v any) error {
	var current string // the variable being parsed: caarlos0/env reports it (OnSet) just before it parses it
	keyed := func(parse func(string) (any, error)) env.ParserFunc {
		return func(s string) (any, error) {
			x, err := parse(s)
			if err != nil {
				return nil, varError{name: current, err: err}
			}
			return x, nil
		}
	}
	err := env.ParseWithOptions(v, env.Options{
		OnSet: func(name string, _ any, _ bool) { current = name },
		FuncMap: map[reflect.Type]env.ParserFunc{
			reflect.TypeFor[time.Duration](): keyed(func(s string) (any, error) { return ParseDuration(strings.TrimSpace(s)) }),
			reflect.TypeFor[Rate]():          keyed(func(s string) (any, error) { return ParseRate(s) }),
			reflect.TypeFor[bool]():          keyed(func(s string) (any, error) { return parseBool(s) }),
			reflect.TypeFor[int]():           keyed(func(s string) (any, error) { n, err := parseInt(s, strconv.IntSize); return int(n), err }),
			reflect.TypeFor[int64]():         keyed(func(s string) (any, error) { return parseInt(s, 64) }),
			reflect.TypeFor[uint32]():        keyed(parseUint32),
			reflect.TypeFor[float64]():       keyed(parseFloat),
			reflect.TypeFor[[]string]():      keyed(func(s string) (any, error) { return parseList(s), nil }),
			reflect.TypeFor[map[string]string](): keyed(func(s string) (any, error) {
				return ParseMap(s)
			}),
			reflect.TypeFor[map[string]time.Duration](): keyed(func(s string) (any, error) {
				return parseMapOf(s, ParseDuration)
			}),
			reflect.TypeFor[map[string]int](): keyed(func(s string) (any, error) {
				return parseMapOf(s, parseCount)
			}),
		},
	})
	if err == nil {
		return nil
	}
	var agg env.AggregateError
	if !errors.As(err, &agg) {
		return err
	}
	msgs := make([]string, 0, len(agg.Errors))
	for _, e := range agg.Errors {
		var pe env.ParseError
		if errors.As(e, &pe) {
			e = pe.Err
		}
		msgs = append(msgs, e.Error())
	}
	slices.Sort(msgs)
	return errors.New(strings.Join(msgs, "; "))
}

// varError is a bad value of one variable.
type varError struct {
	name string
	err  error
}

func (e varError) Error() string { return fmt.Sprintf("$%s: %v", e.name, e.err) }
func (e varError) Unwrap() error { return e.err }

// ParseDuration accepts "10s" or plain seconds, the two forms OpenFaaS's
// exec_timeout takes.
func ParseDuration(v string) (time.Duration, error) {
	if n, err := strconv.Atoi(v); err == nil {
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("not a duration: %q", v)
	}
	return d, nil
}

// ParseMap reads a comma-separated list of name=value pairs
// ("login=5s,gen-avatar=30s"), for per-function settings.
func ParseMap(v string) (map[string]string, error) {
	out := map[string]string{}
	v = strings.TrimSpace(v)
	if v == "" {
		return out, nil
	}
	for pair := range strings.SplitSeq(v, ",") {
		name, value, ok := strings.Cut(strings.TrimSpace(pair), "=")
		name, value = strings.TrimSpace(name), strings.TrimSpace(value)
		if !ok || name == "" || value == "" {
			return nil, fmt.Errorf("%q is not name=value", pair)
		}
		out[name] = value
	}
	return out, nil
}

func parseMapOf[T any](v string, parse func(string) (T, error)) (map[string]T, error) {
	m, err := ParseMap(v)
	if err != nil {
		return nil, err
	}
	out := make(map[string]T, len(m))
	for name, s := range m {
		x, err := parse(s)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		out[name] = x
	}
	return out, nil
}

func parseList(v string) []string {
	var out []string
	for s := range strings.SplitSeq(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func parseBool(v string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "true", "1", "yes":
		return true, nil
	case "false", "0", "no":
		return false, nil
	}
	return false, fmt.Errorf("want true or false, not %q", v)
}

func parseInt(v string, bits int) (int64, error) {
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, bits)
	if err != nil {
		return 0, fmt.Errorf("not an integer: %q", v)
	}
	return n, nil
}

func parseCount(v string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("not a positive count: %q", v)
	}
	return n, nil
}

func parseUint32(v string) (any, error) {
	n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
	if err != nil {
		return nil, fmt.Errorf("not a count: %q", v)
	}
	return uint32(n), nil
}

func parseFloat(v string) (any, error) {
	f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
	if err != nil {
		return nil, fmt.Errorf("not a number: %q", v)
	}
	return f, nil
}

// Setting is one environment variable a configuration struct reads, with
// its default as Parse would read it back ("" when there is none).
type Setting struct {
	Name    string
	Default string
}

// Settings lists every variable root (a configuration struct holding its
// defaults, or a pointer to one) reads, in field order, nested structs
// included, for documentation and its tests. A variable two fields read is
// listed once, with the first one's default.
func Settings(root any) []Setting {
	var out []Setting
	seen := map[string]bool{}
	var walk func(v reflect.Value)
	walk = func(v reflect.Value) {
		for v.Kind() == reflect.Pointer {
			if v.IsNil() {
				return
			}
			v = v.Elem()
		}
		if v.Kind() != reflect.Struct {
			return
		}
		t := v.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("env"), ",")
			switch {
			case name == "-":
			case name != "":
				if !seen[name] {
					seen[name] = true
					out = append(out, Setting{Name: name, Default: format(v.Field(i).Interface())})
				}
			case f.Type.Kind() == reflect.Struct:
				walk(v.Field(i))
			}
		}
	}
	walk(reflect.ValueOf(root))
	return out
}

// format renders a setting's value the way Parse reads it: durations in
// their shortest form ("1m", not "1m0s"), maps as sorted name=value
// pairs, lists comma-separated.
func format(x any) string {
	switch x := x.(type) {
	case time.Duration:
		return formatDuration(x)
	case Rate:
		return x.String()
	case []string:
		return strings.Join(x, ",")
	}
	v := reflect.ValueOf(x)
	if v.Kind() == reflect.Map {
		pairs := make([]string, 0, v.Len())
		for it := v.MapRange(); it.Next(); {
			pairs = append(pairs, fmt.Sprintf("%v=%s", it.Key(), format(it.Value().Interface())))
		}
		slices.Sort(pairs)
		return strings.Join(pairs, ",")
	}
	return fmt.Sprint(x)
}

// formatDuration drops time.Duration.String's zero tails: 24h, 15m, 1m30s.
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

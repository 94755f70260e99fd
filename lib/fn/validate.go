package fn

import (
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"
)

// CheckText refuses, with a 400 naming field, a string PostgreSQL would
// refuse (a NUL byte, invalid UTF-8) or one longer than max characters
// (max <= 0: no bound). Every text a function stores or looks up passes
// through it, so such input never reaches the database as a 500.
func CheckText(field, s string, max int) error {
	if !utf8.ValidString(s) {
		return BadRequest("%s is not valid UTF-8", field)
	}
	if strings.IndexByte(s, 0) >= 0 {
		return BadRequest("%s must not contain NUL characters", field)
	}
	if max > 0 && utf8.RuneCountInString(s) > max {
		return BadRequest("%s must be at most %d characters", field, max)
	}
	return nil
}

// ParseID reads a canonical id: a positive decimal integer with no sign,
// no leading zeros, no exponent and no overflow ("1", never "+1", "01",
// "1e3"). Ids in paths, topics and query strings all pass through it, so
// one resource has one name.
func ParseID(field, s string) (int64, error) {
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id <= 0 || strconv.FormatInt(id, 10) != s {
		return 0, BadRequest("%s must be a positive integer written in decimal digits", field)
	}
	return id, nil
}

// QueryInt reads the optional integer parameter name of q within [lo, hi];
// def when it is absent. Anything else (a sign, leading zeros, a fraction,
// an overflow, a repeated parameter) is a 400.
func QueryInt(q url.Values, name string, def, lo, hi int64) (int64, error) {
	vs, ok := q[name]
	if !ok {
		return def, nil
	}
	refuse := BadRequest("%s must be an integer from %d to %d", name, lo, hi)
	if len(vs) != 1 {
		return 0, refuse
	}
	n, err := strconv.ParseInt(vs[0], 10, 64)
	if err != nil || n < lo || n > hi || strconv.FormatInt(n, 10) != vs[0] {
		return 0, refuse
	}
	return n, nil
}

// QueryBool reads the optional boolean parameter name of q: "true" or
// "false"; false when it is absent. Anything else (1, yes, an empty or
// repeated parameter) is a 400.
func QueryBool(q url.Values, name string) (bool, error) {
	vs, ok := q[name]
	if !ok {
		return false, nil
	}
	if len(vs) == 1 && (vs[0] == "true" || vs[0] == "false") {
		return vs[0] == "true", nil
	}
	return false, BadRequest("%s must be true or false", name)
}

// ParseQuery parses a request's query string, refusing a malformed one or
// one holding text CheckText refuses.
func ParseQuery(req Request) (url.Values, error) {
	q, err := url.ParseQuery(req.QueryString)
	if err != nil {
		return nil, BadRequest("malformed query string")
	}
	for name, vs := range q {
		if err := CheckText("query parameter name", name, 0); err != nil {
			return nil, err
		}
		for _, v := range vs {
			if err := CheckText("query parameter "+strconv.Quote(name), v, 0); err != nil {
				return nil, err
			}
		}
	}
	return q, nil
}

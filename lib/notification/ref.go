package notification

import (
	"encoding/json"
	"fmt"
	"strconv"
)

// Ref is a topic or sender id as a recipient sees it: a direct
// notification has neither, which is 0 here, NULL in the persist
// database and null in JSON. Any other value encodes as the number.
type Ref int64

// MarshalJSON writes 0 as null.
func (r Ref) MarshalJSON() ([]byte, error) {
	if r == 0 {
		return []byte("null"), nil
	}
	return strconv.AppendInt(nil, int64(r), 10), nil
}

// UnmarshalJSON reads null as 0.
func (r *Ref) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*r = 0
		return nil
	}
	return json.Unmarshal(b, (*int64)(r))
}

// Scan implements sql.Scanner (pgx uses it): NULL is 0.
func (r *Ref) Scan(src any) error {
	switch v := src.(type) {
	case nil:
		*r = 0
	case int64:
		*r = Ref(v)
	default:
		return fmt.Errorf("scan %T into notification.Ref", src)
	}
	return nil
}

package notification_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"tidings/lib/fn"
	"tidings/lib/notification"
)

// oldEvent is how the coordinator built the `notification` event before
// there was an Event type; clients depend on its exact bytes.
func oldEvent(id int64, d notification.Draft, createdAt time.Time, unread int64) map[string]any {
	return map[string]any{
		"id": id, "topic_id": d.TopicID, "sender_id": d.SenderID,
		"title": d.Title, "body": d.Body, "created_at": createdAt.UTC().Format(time.RFC3339Nano), "unread": unread,
	}
}

func TestEventEncodesByteForByteAsTheOldMap(t *testing.T) {
	paris := time.FixedZone("CET", 3600)
	cases := []struct {
		name   string
		id     int64
		d      notification.Draft
		at     time.Time
		unread int64
	}{
		{"plain", 1, notification.Draft{TopicID: 2, SenderID: 3, Message: notification.Message{Title: "v1.0", Body: "out now"}},
			time.Date(2026, 12, 7, 10, 0, 0, 123456789, time.UTC), 4},
		{"empty body, whole second, other zone", 9007199254740993, notification.Draft{TopicID: 1, SenderID: 1, Message: notification.Message{Title: "t"}},
			time.Date(2026, 1, 2, 3, 4, 5, 0, paris), 0},
		{"milliseconds as from a record", 42, notification.Draft{TopicID: 7, SenderID: 8, Message: notification.Message{Title: "x", Body: "y"}},
			time.UnixMilli(1765101600123), 100000},
		{"text to escape", 5, notification.Draft{TopicID: 6, SenderID: 7, Message: notification.Message{
			Title: `<b>"quoted" & 'single'</b>`, Body: "line\nbreak\ttab \u2028 \u00e9\u6f22 \U0001F600 \\ \x01"}},
			time.Date(2026, 6, 1, 0, 0, 0, 100, time.UTC), 12},
		{"email and recipients do not show", 5, notification.Draft{TopicID: 6, SenderID: 7, Recipients: 2,
			Message: notification.Message{Title: "m", Email: true}}, time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC), 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want, err := json.Marshal(oldEvent(c.id, c.d, c.at, c.unread))
			if err != nil {
				t.Fatal(err)
			}
			got, err := json.Marshal(notification.NewEvent(c.id, c.d, c.at, c.unread))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(want) {
				t.Errorf("event encodes as\n %s\nthe old map as\n %s", got, want)
			}
		})
	}
}

func TestDraftEncodesItsFieldsAndNoRecipientIDs(t *testing.T) {
	d := notification.Draft{TopicID: 1, SenderID: 2, Message: notification.Message{Title: "t", Body: "b", Email: true}, Recipients: 100000}
	b, _ := json.Marshal(d)
	var fields map[string]any
	if err := json.Unmarshal(b, &fields); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"topic_id", "sender_id", "title", "body", "email", "recipients_count"} {
		if _, ok := fields[k]; !ok {
			t.Errorf("%s has no %q", b, k)
		}
	}
	if len(fields) != 6 {
		t.Errorf("%s: want exactly the six fields, the recipients as a count", b)
	}
	// A record written by the coordinator before recipient sets still
	// decodes (its ids are ignored): recovery can finish it.
	var old notification.Draft
	if err := json.Unmarshal([]byte(`{"topic_id":1,"sender_id":2,"title":"t","body":"b","email":true,"recipients":[3]}`), &old); err != nil {
		t.Fatal(err)
	}
	if old.Title != "t" || old.Body != "b" || !old.Email || old.TopicID != 1 || old.SenderID != 2 {
		t.Errorf("old payload decoded as %+v", old)
	}
}

func TestMessageCheckTrimsTheTitleAndRefusesBadText(t *testing.T) {
	m := notification.Message{Title: "  v1.0 \n", Body: "b"}
	if err := m.Check(); err != nil || m.Title != "v1.0" {
		t.Fatalf("Check of a padded title: %v, title %q; want nil and %q", err, m.Title, "v1.0")
	}
	for name, bad := range map[string]notification.Message{
		"blank title":        {Title: " \t "},
		"empty title":        {},
		"title too long":     {Title: strings.Repeat("é", notification.MaxTitle+1)},
		"NUL in title":       {Title: "a\x00"},
		"invalid UTF-8":      {Title: "\xff"},
		"body too long":      {Title: "t", Body: strings.Repeat("b", notification.MaxBody+1)},
		"NUL in body":        {Title: "t", Body: "\x00"},
		"body invalid UTF-8": {Title: "t", Body: "\xc3\x28"},
	} {
		before := bad
		err := bad.Check()
		var fe *fn.Error
		if !errors.As(err, &fe) || fe.Status != http.StatusBadRequest {
			t.Errorf("%s: Check = %v, want a 400", name, err)
		}
		if bad != before {
			t.Errorf("%s: a refused message was changed to %+v", name, bad)
		}
	}
	long := notification.Message{Title: strings.Repeat("é", notification.MaxTitle)}
	if err := long.Check(); err != nil {
		t.Errorf("a title of exactly %d characters: %v", notification.MaxTitle, err)
	}
}

func TestDraftCheckRefusesNonPositiveIDs(t *testing.T) {
	for _, d := range []notification.Draft{
		{TopicID: 0, SenderID: 1, Message: notification.Message{Title: "t"}},
		{TopicID: 1, SenderID: -1, Message: notification.Message{Title: "t"}},
		{TopicID: 1, SenderID: 1, Message: notification.Message{Title: ""}},
	} {
		if err := d.Check(); err == nil {
			t.Errorf("Check of %+v: nil, want a 400", d)
		}
	}
	ok := notification.Draft{TopicID: 1, SenderID: 1, Message: notification.Message{Title: " t "}}
	if err := ok.Check(); err != nil || ok.Title != "t" {
		t.Errorf("Check of a good draft: %v, title %q", err, ok.Title)
	}
}

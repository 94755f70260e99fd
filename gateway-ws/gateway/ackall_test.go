package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"tidings/lib/store"
	"tidings/lib/testenv"
)

// call sends a request with the bearer token and answers its status and
// body, or an error (for goroutines, which must not t.Fatal).
func call(method, url, bearer, body string) (int, string, error) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Authorization", "Bearer "+bearer)
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// ack-all through the gateway while the owner publishes and the reader
// acks single notifications, all at once: every answer is 200 or 202;
// once the publishes are done, a last ack-all answers {"unread":0} from
// the counter, the outbox drains, the counter holds 0 and the invariant
// (counters = unacked committed deliveries, nothing half-done) holds;
// an ack-all after that changes nothing.
func TestAckAllRacingPublishesAndSingleAcksStaysConsistent(t *testing.T) {
	db, g := gatewayWithFunctions(t)
	topicID, ownerID, subs := testenv.Topic(t, db.Pool, 2)
	owner, reader := token(t, ownerID), token(t, subs[0])

	const publishes = 30
	var wg sync.WaitGroup
	errs := make(chan error, 1000)
	done := make(chan struct{})
	wg.Add(1)
	go func() { // the owner publishes
		defer wg.Done()
		defer close(done)
		for i := 0; i < publishes; i++ {
			s, body, err := call("POST", g.httpURL(fmt.Sprintf("/api/topics/%d/notifications", topicID)), owner, fmt.Sprintf(`{"title":"n%d"}`, i))
			if err != nil || s != http.StatusOK && s != http.StatusCreated {
				errs <- fmt.Errorf("publish %d: %d %s %v", i, s, body, err)
			}
		}
	}()
	acked := func(what, url, body string) {
		s, out, err := call("POST", url, reader, body)
		if err != nil || s != http.StatusOK && s != http.StatusAccepted {
			errs <- fmt.Errorf("%s: %d %s %v, want 200 or 202", what, s, out, err)
		}
	}
	for w := 0; w < 2; w++ {
		wg.Add(2)
		go func() { // the reader marks everything read, again and again
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				acked("ack-all", g.httpURL("/function/ack-all"), "{}")
			}
		}()
		go func() { // and acks the unread ones it lists, one by one
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				s, body, err := call("GET", g.httpURL("/function/list-notifications?unread=true&limit=5"), reader, "")
				var page struct {
					Notifications []struct {
						ID int64 `json:"id"`
					} `json:"notifications"`
				}
				if err != nil || s != http.StatusOK || json.Unmarshal([]byte(body), &page) != nil {
					errs <- fmt.Errorf("list unread: %d %s %v", s, body, err)
					continue
				}
				for _, n := range page.Notifications {
					acked("ack", g.httpURL("/function/ack-notification"), fmt.Sprintf(`{"notification_id":%d}`, n.ID))
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	testenv.Eventually(t, "a last ack-all answers the counter's 0", 100, func() bool {
		s, body, err := call("POST", g.httpURL("/function/ack-all"), reader, "{}")
		return err == nil && s == http.StatusOK && body == `{"unread":0}`
	})
	testenv.Eventually(t, "the outbox drains", 200, func() bool {
		var n int
		return db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM ack_outbox`).Scan(&n) == nil && n == 0
	})
	if s, body, err := call("GET", g.httpURL("/function/get-counter"), reader, ""); err != nil || s != 200 || body != `{"unread":0}` {
		t.Errorf("the reader's counter: %d %s %v, want {\"unread\":0}", s, body, err)
	}
	if s, body, err := call("GET", g.httpURL("/function/get-counter"), token(t, subs[1]), ""); err != nil || s != 200 || body != fmt.Sprintf(`{"unread":%d}`, publishes) {
		t.Errorf("the other subscriber's counter: %d %s %v, want %d", s, body, err, publishes)
	}
	if err := store.CheckInvariant(context.Background(), db.Pool, db.Pool); err != nil {
		t.Error(err)
	}
	before := testenv.Snapshot(t, db.Pool)
	if s, body, err := call("POST", g.httpURL("/function/ack-all"), reader, "{}"); err != nil || s != 200 || body != `{"unread":0}` {
		t.Errorf("ack-all again: %d %s %v, want 200 {\"unread\":0}", s, body, err)
	}
	if after := testenv.Snapshot(t, db.Pool); after != before {
		t.Errorf("an ack-all with nothing unread changed the database")
	}
}

package listnotifications

import (
	"context"
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"tidings/lib/auth"
	"tidings/lib/fn"
	"tidings/lib/notification"
	"tidings/lib/store"
	"tidings/lib/testenv"
)

func TestListNotificationsPagesNewestFirstAndHidesPrepared(t *testing.T) {
	dbs := testenv.NewDatabases(t)
	ctx := context.Background()
	owner, _ := testenv.User(t, dbs.Directory.Pool, "owner@example.com")
	reader, token := testenv.User(t, dbs.Directory.Pool, "reader@example.com")
	topic, _ := store.CreateTopic(ctx, dbs.Directory.Pool, owner, "news", "")
	for i := 1; i <= 5; i++ {
		tx := fmt.Sprintf("tx-%d", i)
		if _, err := store.PrepareNotification(ctx, dbs.Persist.Pool, tx, notification.Draft{
			TopicID: topic.ID, SenderID: owner, Message: notification.Message{Title: tx}, Recipients: []int64{reader},
		}); err != nil {
			t.Fatal(err)
		}
		if i != 5 { // the fifth stays prepared
			_ = store.CommitNotification(ctx, dbs.Persist.Pool, tx)
		}
	}
	h := New(dbs.Directory.Pool, dbs.Persist.Pool, auth.NewTokens(testenv.JWTKey, time.Hour))
	list := func(query string) (int, Response) {
		r := httptest.NewRequest("GET", "/?"+query, nil)
		r.Header.Set("Authorization", "Bearer "+token)
		w := httptest.NewRecorder()
		(&fn.Adapter{Handler: h}).ServeHTTP(w, r)
		var out Response
		if w.Code == 200 {
			testenv.Decode(t, w.Body.Bytes(), &out)
		}
		return w.Code, out
	}
	_, page1 := list("limit=2")
	if len(page1.Notifications) != 2 || page1.Notifications[0].Title != "tx-4" || page1.Notifications[1].Title != "tx-3" {
		t.Fatalf("first page %+v, want tx-4, tx-3 (tx-5 is only prepared)", page1.Notifications)
	}
	_, page2 := list(fmt.Sprintf("limit=2&before=%d", page1.Notifications[1].ID))
	if len(page2.Notifications) != 2 || page2.Notifications[0].Title != "tx-2" || page2.Notifications[1].Title != "tx-1" {
		t.Fatalf("second page %+v, want tx-2, tx-1", page2.Notifications)
	}
	for _, q := range []string{"limit=0", "limit=201", "limit=ten", "before=-1", "before=x", "%zz"} {
		if status, _ := list(q); status != 400 {
			t.Errorf("?%s: %d, want 400", q, status)
		}
	}
}

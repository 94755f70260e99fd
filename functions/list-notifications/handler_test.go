package listnotifications

import (
	"context"
	"fmt"
	"net/http/httptest"
	"slices"
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
		if _, err := store.PrepareNotificationFor(ctx, dbs.Persist.Pool, tx, notification.Draft{
			TopicID: topic.ID, SenderID: owner, Message: notification.Message{Title: tx},
		}, []int64{reader}); err != nil {
			t.Fatal(err)
		}
		if i != 5 { // the fifth stays prepared
			_ = store.CommitNotification(ctx, dbs.Persist.Pool, tx)
		}
	}
	h := New(dbs.Directory.Pool, dbs.Persist.Pool, auth.NewTokens(testenv.JWTKey, time.Hour))
	list := lister(t, h, token)
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

// Paging with before= through a few hundred notifications yields each
// notification delivered to the reader and committed exactly once, newest
// first, whatever lies between them: notifications still prepared, and
// notifications delivered only to someone else.
func TestPagingThroughTheHistoryYieldsEveryNotificationOnceInOrder(t *testing.T) {
	dbs := testenv.NewDatabases(t)
	ctx := context.Background()
	owner, _ := testenv.User(t, dbs.Directory.Pool, "owner@example.com")
	reader, token := testenv.User(t, dbs.Directory.Pool, "reader@example.com")
	other, _ := testenv.User(t, dbs.Directory.Pool, "other@example.com")
	topic, _ := store.CreateTopic(ctx, dbs.Directory.Pool, owner, "news", "")
	var want []int64 // newest first
	for i := 1; i <= 300; i++ {
		tx := fmt.Sprintf("tx-%d", i)
		recipients := []int64{reader, other}
		if i%5 == 0 {
			recipients = []int64{other}
		}
		id, err := store.PrepareNotificationFor(ctx, dbs.Persist.Pool, tx, notification.Draft{
			TopicID: topic.ID, SenderID: owner, Message: notification.Message{Title: tx},
		}, recipients)
		if err != nil {
			t.Fatal(err)
		}
		if i%7 == 0 {
			continue // stays prepared
		}
		if err := store.CommitNotification(ctx, dbs.Persist.Pool, tx); err != nil {
			t.Fatal(err)
		}
		if i%5 != 0 {
			want = append([]int64{id}, want...)
		}
	}
	h := New(dbs.Directory.Pool, dbs.Persist.Pool, auth.NewTokens(testenv.JWTKey, time.Hour))
	var got []int64
	query := "limit=11"
	for pages := 0; ; pages++ {
		if pages > len(want) {
			t.Fatalf("still paging after %d pages", pages)
		}
		r := httptest.NewRequest("GET", "/?"+query, nil)
		r.Header.Set("Authorization", "Bearer "+token)
		w := httptest.NewRecorder()
		(&fn.Adapter{Handler: h}).ServeHTTP(w, r)
		if w.Code != 200 {
			t.Fatalf("?%s: %d %s", query, w.Code, w.Body)
		}
		var page Response
		testenv.Decode(t, w.Body.Bytes(), &page)
		if len(page.Notifications) == 0 {
			break
		}
		for _, n := range page.Notifications {
			got = append(got, n.ID)
		}
		query = fmt.Sprintf("limit=11&before=%d", got[len(got)-1])
	}
	if !slices.Equal(got, want) {
		t.Errorf("paged through %d notifications %v,\nwant the %d committed ones delivered to the reader, newest first: %v", len(got), got, len(want), want)
	}
}

// unread=true pages through only the unacked notifications, newest first,
// each once, however the acked ones lie between them; unread=false is the
// whole list; anything but true or false is a 400.
func TestUnreadTrueListsOnlyTheUnackedPageByPage(t *testing.T) {
	dbs := testenv.NewDatabases(t)
	ctx := context.Background()
	owner, _ := testenv.User(t, dbs.Directory.Pool, "owner@example.com")
	reader, token := testenv.User(t, dbs.Directory.Pool, "reader@example.com")
	topic, _ := store.CreateTopic(ctx, dbs.Directory.Pool, owner, "news", "")
	var unread []int64 // newest first
	for i := 1; i <= 40; i++ {
		tx := fmt.Sprintf("tx-%d", i)
		id, err := store.PrepareNotificationFor(ctx, dbs.Persist.Pool, tx, notification.Draft{
			TopicID: topic.ID, SenderID: owner, Message: notification.Message{Title: tx},
		}, []int64{reader})
		if err != nil {
			t.Fatal(err)
		}
		if err := store.CommitNotification(ctx, dbs.Persist.Pool, tx); err != nil {
			t.Fatal(err)
		}
		if i%3 == 0 {
			if _, _, err := store.RecordAck(ctx, dbs.Persist.Pool, reader, id); err != nil {
				t.Fatal(err)
			}
			continue
		}
		unread = append([]int64{id}, unread...)
	}
	h := New(dbs.Directory.Pool, dbs.Persist.Pool, auth.NewTokens(testenv.JWTKey, time.Hour))
	list := lister(t, h, token)
	var got []int64
	query := "unread=true&limit=4"
	for pages := 0; pages <= len(unread); pages++ {
		status, page := list(query)
		if status != 200 {
			t.Fatalf("?%s: %d", query, status)
		}
		if len(page.Notifications) == 0 {
			break
		}
		for _, n := range page.Notifications {
			if n.AckedAt != nil {
				t.Errorf("notification %d is acked, but listed as unread", n.ID)
			}
			got = append(got, n.ID)
		}
		query = fmt.Sprintf("unread=true&limit=4&before=%d", got[len(got)-1])
	}
	if !slices.Equal(got, unread) {
		t.Errorf("paged through the unread %v,\nwant the %d unacked, newest first: %v", got, len(unread), unread)
	}
	if _, all := list("unread=false&limit=200"); len(all.Notifications) != 40 {
		t.Errorf("unread=false listed %d, want all 40", len(all.Notifications))
	}
	for _, q := range []string{"unread=1", "unread=yes", "unread=", "unread=TRUE", "unread=true&unread=false"} {
		if status, _ := list(q); status != 400 {
			t.Errorf("?%s: %d, want 400", q, status)
		}
	}
}

// lister lists through h as the holder of token: the status and, for a
// 200, the page.
func lister(t *testing.T, h *Handler, token string) func(query string) (int, Response) {
	return func(query string) (int, Response) {
		t.Helper()
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
}

package functions_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"tidings/functions"
	"tidings/lib/auth"
	"tidings/lib/fn"
	"tidings/lib/testenv"
)

// call is one request of the scenario; token names the user whose token to
// send ("" for none).
type call struct {
	function, method, body, token string
	want                          int
}

// scenario walks several functions through success and error cases; every
// step depends on the ones before, so each adapter gets a database of its own.
var scenario = []call{
	{"register", "POST", `{"email":"ada@example.com","password":"analytical","name":"Ada"}`, "", 201},
	{"register", "POST", `{"email":"ADA@example.com","password":"analytical","name":"Ada"}`, "", 409},
	{"register", "POST", `{"email":"bob@example.com","password":"short","name":"Bob"}`, "", 400},
	{"register", "POST", `{"email":`, "", 400},
	{"register", "GET", ``, "", 405},
	{"register", "POST", `{"email":"bob@example.com","password":"` + strings.Repeat("p", 70000) + `","name":"Bob"}`, "", 413},
	{"login", "POST", `{"email":"ada@example.com","password":"wrong-password"}`, "", 401},
	{"login", "POST", `{"email":"nobody@example.com","password":"analytical"}`, "", 401},
	{"login", "POST", `{"email":"Ada@Example.com","password":"analytical"}`, "", 200},
	{"create-topic", "POST", `{"name":"releases"}`, "", 401},
	{"create-topic", "POST", `{"name":"releases"}`, "forged", 401},
	{"create-topic", "POST", `{"name":"releases","description":"new versions"}`, "ada", 201},
	{"create-topic", "POST", `{"name":""}`, "ada", 400},
	{"subscribe", "POST", `{"topic_id":999}`, "ada", 404},
	{"subscribe", "POST", `{"topic_id":1}`, "ada", 200},
	{"list-topics", "GET", ``, "ada", 200},
	{"list-topics", "GET", ``, "", 401},
	{"unsubscribe", "POST", `{"topic_id":1}`, "ada", 200},
	{"unsubscribe", "POST", `{"topic_id":"one"}`, "ada", 400},
}

// volatile fields differ between two runs of the same scenario.
var volatile = regexp.MustCompile(`"(token|expires_at|created_at)":"[^"]*"`)

func TestHandlersAnswerAlikeThroughHTTPAndLambda(t *testing.T) {
	type runner func(h fn.Handler, c call, token string) (int, string)
	viaHTTP := func(h fn.Handler, c call, token string) (int, string) {
		r := httptest.NewRequest(c.method, "/function/"+c.function, strings.NewReader(c.body))
		if token != "" {
			r.Header.Set("Authorization", "Bearer "+token)
		}
		w := httptest.NewRecorder()
		(&fn.Adapter{Handler: h}).ServeHTTP(w, r)
		return w.Code, w.Body.String()
	}
	viaLambda := func(h fn.Handler, c call, token string) (int, string) {
		ev := events.APIGatewayV2HTTPRequest{Body: c.body, Headers: map[string]string{}}
		ev.RequestContext.HTTP.Method = c.method
		if token != "" {
			ev.Headers["authorization"] = "Bearer " + token
		}
		resp, err := (&fn.Adapter{Handler: h}).HandleLambda(context.Background(), ev)
		if err != nil {
			t.Fatalf("lambda adapter: %v", err)
		}
		return resp.StatusCode, resp.Body
	}
	run := func(via runner) []string {
		db := testenv.NewDB(t)
		deps := &functions.Deps{DBs: db.DBs(), Tokens: auth.NewTokens(testenv.JWTKey, time.Hour)}
		tokens := map[string]string{"forged": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"}
		var answers []string
		for i, c := range scenario {
			h, err := functions.New(c.function, deps)
			if err != nil {
				t.Fatal(err)
			}
			status, body := via(h, c, tokens[c.token])
			if status != c.want {
				t.Errorf("step %d %s %s: status %d, want %d: %s", i, c.method, c.function, status, c.want, body)
			}
			if c.function == "register" && status == http.StatusCreated {
				var out struct{ Token string }
				_ = json.Unmarshal([]byte(body), &out)
				tokens["ada"] = out.Token
			}
			answers = append(answers, volatile.ReplaceAllString(body, `"$1":"…"`))
		}
		return answers
	}
	httpAnswers, lambdaAnswers := run(viaHTTP), run(viaLambda)
	for i := range scenario {
		if httpAnswers[i] != lambdaAnswers[i] {
			t.Errorf("step %d (%s): adapters differ\n http   %s\n lambda %s", i, scenario[i].function, httpAnswers[i], lambdaAnswers[i])
		}
	}
}

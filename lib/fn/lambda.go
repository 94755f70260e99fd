package fn

import (
	"context"
	"encoding/base64"
	"net/http"
	"strings"

	"github.com/aws/aws-lambda-go/events"
)

// HandleLambda serves the handler behind an API Gateway v2 HTTP API (payload
// format 2.0); pass it to lambda.Start.
func (a *Adapter) HandleLambda(ctx context.Context, ev events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
	body := []byte(ev.Body)
	if ev.IsBase64Encoded {
		decoded, err := base64.StdEncoding.DecodeString(ev.Body)
		if err != nil {
			return toLambda(ErrorResponse(BadRequest("body is not valid base64"))), nil
		}
		body = decoded
	}
	if int64(len(body)) > a.maxBody() {
		return toLambda(ErrorResponse(TooLarge(a.maxBody()))), nil
	}
	// API Gateway has already joined repeated request headers with commas;
	// each stays one value, as net/http keeps a comma-separated line, so
	// the handler sees what the HTTP adapter would show it.
	header := http.Header{}
	for k, v := range ev.Headers {
		header.Add(k, v)
	}
	if len(ev.Cookies) > 0 {
		header.Set("Cookie", strings.Join(ev.Cookies, "; "))
	}
	host := ev.RequestContext.DomainName
	if host == "" {
		host = header.Get("Host")
	}
	req := Request{
		Body:        body,
		Header:      header,
		QueryString: ev.RawQueryString,
		Method:      ev.RequestContext.HTTP.Method,
		Host:        host,
	}
	req.WithContext(ctx)
	return toLambda(a.limited(req)), nil
}

// toLambda renders resp in payload format 2.0, which has no multi-value
// headers: every Set-Cookie goes to Cookies, one entry each (a cookie's
// Expires holds a comma, so joining would corrupt it; API Gateway sends
// each as its own set-cookie), and other repeated headers are joined with
// ", " as RFC 9110 section 5.3 allows and API Gateway itself does.
func toLambda(resp Response) events.APIGatewayV2HTTPResponse {
	out := events.APIGatewayV2HTTPResponse{
		StatusCode: resp.StatusCode,
		Headers:    map[string]string{},
	}
	for k, vs := range resp.Header {
		if http.CanonicalHeaderKey(k) == "Set-Cookie" {
			out.Cookies = append(out.Cookies, vs...)
			continue
		}
		out.Headers[k] = strings.Join(vs, ", ")
	}
	if isText(resp.Header.Get("Content-Type")) {
		out.Body = string(resp.Body)
	} else {
		out.Body = base64.StdEncoding.EncodeToString(resp.Body)
		out.IsBase64Encoded = true
	}
	return out
}

func isText(contentType string) bool {
	return contentType == "" || strings.HasPrefix(contentType, "text/") ||
		strings.HasPrefix(contentType, "application/json")
}

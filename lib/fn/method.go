package fn

import (
	"net/http"
	"strings"
)

// RequireMethod refuses a request whose method is not one of allowed.
func RequireMethod(req Request, allowed ...string) error {
	for _, m := range allowed {
		if req.Method == m {
			return nil
		}
	}
	return Errorf(http.StatusMethodNotAllowed, "method_not_allowed", "use %s", strings.Join(allowed, " or "))
}

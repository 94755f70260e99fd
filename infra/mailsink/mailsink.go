// Package mailsink is a small SMTP server that keeps every mail it receives
// in memory instead of delivering it: the real SMTP peer of the send-mail
// tests, and the mail server `make up` runs by default so that mail works
// with no setup and the mails sent can be read at its HTTP listing.
//
// It is built on github.com/emersion/go-smtp. It speaks plain SMTP (no
// TLS), accepts AUTH PLAIN (any credentials, or only the configured ones),
// and can hold or refuse a mail through a hook, for fault tests.
package mailsink

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/http"
	"net/mail"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"tidings/lib/config"
)

// Mail is one received mail: the SMTP envelope, the main headers and the
// decoded text body, and the raw message as it came.
type Mail struct {
	AuthUser  string    `json:"auth_user,omitempty"` // who authenticated, if anyone
	EnvFrom   string    `json:"envelope_from"`       // MAIL FROM
	EnvTo     []string  `json:"envelope_to"`         // RCPT TO, in order
	From      string    `json:"from"`                // From: header
	To        string    `json:"to"`                  // To: header
	Subject   string    `json:"subject"`             // decoded Subject: header
	MessageID string    `json:"message_id"`          // Message-ID: header, with its angle brackets
	Text      string    `json:"text"`                // body, transfer-decoded
	Raw       string    `json:"raw"`                 // the message as received
	Received  time.Time `json:"received_at"`
}

// Header returns the named header of the raw message ("" when absent or
// unparsable).
func (m Mail) Header(name string) string {
	msg, err := mail.ReadMessage(strings.NewReader(m.Raw))
	if err != nil {
		return ""
	}
	return msg.Header.Get(name)
}

// Options configure a Sink. The zero value listens on a free loopback port.
type Options struct {
	Addr   string    // listen address; "" means 127.0.0.1:0
	Domain string    // the name it greets with; "" means "mailsink.local"
	Print  io.Writer // when set, each accepted mail is printed here

	// Users, when set, makes AUTH PLAIN required and checks the
	// credentials against it; when nil any credentials are accepted and
	// none are required.
	Users map[string]string

	// Accept, when set, is called with each mail after its data arrived and
	// before the server answers; it may block (the client waits for the
	// answer) and an error refuses the mail (a *smtp.SMTPError keeps its
	// code, so 4xx is temporary and 5xx permanent).
	Accept func(Mail) error

	Keep int // mails kept, oldest dropped first; 0 means 1000

	// Timeouts are the read deadlines every tidings server holds its
	// clients to (lib/config, zero fields get the defaults): each command
	// or line of mail must arrive, and each answer be written, within
	// ReadBodyTimeout, so a slow client cannot hold a connection.
	Timeouts config.HTTPServer
}

// Sink is a running mail sink.
type Sink struct {
	opts   Options
	server *smtp.Server
	ln     net.Listener
	done   chan struct{}

	mu    sync.Mutex
	mails []Mail
}

// Start listens and serves SMTP until Close.
func Start(opts Options) (*Sink, error) {
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if opts.Domain == "" {
		opts.Domain = "mailsink.local"
	}
	if opts.Keep <= 0 {
		opts.Keep = 1000
	}
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("mailsink: listen on %s: %w", opts.Addr, err)
	}
	s := &Sink{opts: opts, ln: ln, done: make(chan struct{})}
	s.server = smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &session{sink: s}, nil }))
	s.server.Domain = opts.Domain
	s.server.AllowInsecureAuth = true // a local sink: there is no TLS to wait for
	s.server.MaxMessageBytes = 10 << 20
	s.server.MaxRecipients = 100
	timeouts := opts.Timeouts.WithDefaults()
	s.server.ReadTimeout = timeouts.ReadBodyTimeout
	s.server.WriteTimeout = timeouts.ReadBodyTimeout
	s.server.ErrorLog = log.New(io.Discard, "", 0)
	go func() {
		defer close(s.done)
		_ = s.server.Serve(ln)
	}()
	return s, nil
}

// Addr is the address the sink listens on ("127.0.0.1:2525").
func (s *Sink) Addr() string { return s.ln.Addr().String() }

// Host and Port split Addr, for SMTP client settings.
func (s *Sink) Host() string { return s.ln.Addr().(*net.TCPAddr).IP.String() }

// Port is the TCP port the sink listens on.
func (s *Sink) Port() int { return s.ln.Addr().(*net.TCPAddr).Port }

// Mails returns a copy of the mails received so far, oldest first.
func (s *Sink) Mails() []Mail {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Mail, len(s.mails))
	copy(out, s.mails)
	return out
}

// Reset forgets every mail received.
func (s *Sink) Reset() {
	s.mu.Lock()
	s.mails = nil
	s.mu.Unlock()
}

// Close stops listening and drops open connections.
func (s *Sink) Close() error {
	err := s.server.Close()
	<-s.done
	if errors.Is(err, smtp.ErrServerClosed) {
		return nil
	}
	return err
}

// Handler serves the received mails as JSON: GET answers
// {"mails":[...]} oldest first (?limit=N keeps the newest N), DELETE
// forgets them all.
func (s *Sink) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			mails := s.Mails()
			var limit int
			if _, err := fmt.Sscanf(r.URL.Query().Get("limit"), "%d", &limit); err == nil && limit > 0 && limit < len(mails) {
				mails = mails[len(mails)-limit:]
			}
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]any{"mails": mails})
		case http.MethodDelete:
			s.Reset()
			w.WriteHeader(http.StatusNoContent)
		default:
			w.Header().Set("Allow", "GET, HEAD, DELETE")
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusMethodNotAllowed)
			_, _ = w.Write([]byte(`{"error":{"code":"method_not_allowed","message":"use GET or DELETE"}}`))
		}
	})
}

func (s *Sink) keep(m Mail) {
	s.mu.Lock()
	s.mails = append(s.mails, m)
	if over := len(s.mails) - s.opts.Keep; over > 0 {
		s.mails = append([]Mail(nil), s.mails[over:]...)
	}
	s.mu.Unlock()
	if s.opts.Print != nil {
		fmt.Fprintf(s.opts.Print, "mailsink: mail %s from %s to %s, subject %q\n%s\n\n",
			m.MessageID, m.EnvFrom, strings.Join(m.EnvTo, ", "), m.Subject, m.Text)
	}
}

// session is one SMTP connection's transaction state.
type session struct {
	sink     *Sink
	authUser string
	from     string
	to       []string
}

var _ smtp.AuthSession = (*session)(nil)

// AuthMechanisms implements smtp.AuthSession.
func (ss *session) AuthMechanisms() []string { return []string{sasl.Plain} }

// Auth implements smtp.AuthSession.
func (ss *session) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, username, password string) error {
		if users := ss.sink.opts.Users; users != nil {
			if want, ok := users[username]; !ok || want != password {
				return smtp.ErrAuthFailed
			}
		}
		ss.authUser = username
		return nil
	}), nil
}

func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	if ss.sink.opts.Users != nil && ss.authUser == "" {
		return smtp.ErrAuthRequired
	}
	ss.from = from
	return nil
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.to = append(ss.to, to)
	return nil
}

func (ss *session) Data(r io.Reader) error {
	raw, err := io.ReadAll(r)
	if err != nil {
		return fmt.Errorf("read data: %w", err)
	}
	m := parse(raw)
	m.AuthUser, m.EnvFrom, m.EnvTo, m.Received = ss.authUser, ss.from, append([]string(nil), ss.to...), time.Now().UTC()
	if accept := ss.sink.opts.Accept; accept != nil {
		if err := accept(m); err != nil {
			return err
		}
	}
	ss.sink.keep(m)
	return nil
}

func (ss *session) Reset() { ss.from, ss.to = "", nil }

func (ss *session) Logout() error { return nil }

// parse reads the headers and the text body of a raw message; a message
// it cannot parse is kept raw.
func parse(raw []byte) Mail {
	m := Mail{Raw: string(raw)}
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return m
	}
	dec := new(mime.WordDecoder)
	header := func(name string) string {
		v := msg.Header.Get(name)
		if d, err := dec.DecodeHeader(v); err == nil {
			return d
		}
		return v
	}
	m.From, m.To, m.Subject, m.MessageID = header("From"), header("To"), header("Subject"), msg.Header.Get("Message-Id")
	body, _ := io.ReadAll(msg.Body)
	switch strings.ToLower(msg.Header.Get("Content-Transfer-Encoding")) {
	case "quoted-printable":
		if d, err := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(body))); err == nil {
			body = d
		}
	case "base64":
		if d, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(string(body)), "")); err == nil {
			body = d
		}
	}
	m.Text = strings.ReplaceAll(string(body), "\r\n", "\n")
	return m
}

// Package counterindoubt lists the counter participant's transactions held
// prepared for longer than asked, so gateway-ws's recovery can finish them
// even when their Redis record is lost. Internal.
package counterindoubt

import (
	"github.com/jackc/pgx/v5/pgxpool"

	"tidings/lib/barrier"
	"tidings/lib/fn"
	"tidings/lib/twopc"
)

// New returns a counter-indoubt handler.
func New(db *pgxpool.Pool) fn.Handler { return barrier.InDoubtHandler(db, twopc.Counter) }

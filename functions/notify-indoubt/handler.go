// Package notifyindoubt lists the persist participant's transactions held
// prepared for longer than asked, so gateway-ws's recovery can finish them
// even when their Redis record is lost. Internal.
package notifyindoubt

import (
	"github.com/jackc/pgx/v5/pgxpool"

	"tidings/lib/barrier"
	"tidings/lib/fn"
	"tidings/lib/twopc"
)

// New returns a notify-indoubt handler.
func New(db *pgxpool.Pool) fn.Handler { return barrier.InDoubtHandler(db, twopc.Persist) }

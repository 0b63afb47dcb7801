package inbound

import (
	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/meshgate/authz"
)

// authorize authenticates request f (when the table requires auth) and
// checks the table's policy for the verified key id and f's cmd. pass is
// true when the request may go on, with keyID the verified key id.
// Otherwise it has been answered (result 3 or 4, unless oneway) and
// counted; keep is false when the connection must close (malformed auth
// extension).
func (c *conn) authorize(t *Table, f *codec.Frame, oneway bool) (keyID uint32, pass, keep bool) {
	s := c.s
	if t.Auth != nil {
		id, reason := s.verify(t.Auth, c.rd.Last(), f)
		if reason != "" {
			s.auth.failed(reason)
			if reason == authz.ReasonMalformed {
				return id, false, false
			}
			s.rejected("auth")
			if !oneway {
				msg := "unauthenticated"
				switch reason {
				case authz.ReasonNonceCacheFull:
					msg = "unauthenticated: replay cache full, retry later"
				case authz.ReasonNonceKeyQuota:
					msg = "unauthenticated: replay cache quota of this key id reached, retry later"
				}
				c.replyError(f, codec.ResultUnauthenticated, msg)
			}
			return id, false, true
		}
		keyID = id
	}
	// A policy without auth cannot know the caller (config validation
	// rejects that): deny.
	if t.Authz != nil && (t.Auth == nil || !t.Authz.AllowCmd(keyID, f.Cmd)) {
		s.auth.failed(authz.ReasonForbidden)
		s.rejected("forbidden")
		if !oneway {
			c.replyError(f, codec.ResultForbidden, "permission denied")
		}
		return keyID, false, true
	}
	return keyID, true, true
}

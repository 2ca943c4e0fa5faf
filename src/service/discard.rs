//! RFC 863, discard: read everything the client sends and drop it, until
//! it closes; then close too.
//!
//! The bytes pass through the loop's shared read buffer and go nowhere, so
//! a discard connection holds no buffer of its own. A pass reads at most
//! the per-pass budget, like an echo pass, so a fast sender shares the
//! loop with the rest.

use crate::connection::{Connection, Limits, Next, Reason, Received, Stream, Wake};

/// One discard pass: read and drop until the socket is empty, the peer's
/// FIN (then our FIN, and the connection is done), or the budget.
pub(crate) fn pass<S: Stream>(
    c: &mut Connection<S>,
    buf: &mut [u8],
    wake: Wake,
    limits: &Limits,
) -> Next {
    let mut moved = 0;
    while moved < limits.budget {
        match c.receive(buf, wake.now) {
            Received::Bytes(n) => {
                // Counted as this connection's bytes moved.
                c.count_moved(n);
                moved += n;
            }
            Received::Nothing => return Next::Wait,
            Received::Eof => return c.finish(),
            Received::Failed(e) => return c.abort(Reason::Error(e)),
        }
    }
    Next::Again
}

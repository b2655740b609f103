package inbound

import (
	"bufio"
	"errors"
	"net"
	"sync"
	"time"
)

const (
	// maxCommandLine bounds one command line with its CRLF. RFC 5321 4.5.3.1.4 asks for 512
	// octets; extensions make lines longer, and Postfix's line_length_limit is 2048.
	maxCommandLine = 2048
	// maxDataLine bounds one line of message data. RFC 5322 allows 998 characters, but mail
	// clients send HTML on single lines of tens of kilobytes; Postfix folds lines past 2048,
	// which changes the message and breaks its DKIM signature. deskgate keeps lines whole up to
	// this size and refuses a message with a longer line (554 5.6.0) once its data has ended.
	maxDataLine = 64 * 1024
)

var (
	errLineTooLong = errors.New("line too long")
	// errDeadline is a read that ran past the deadline of the command or of the session.
	errDeadline = errors.New("deadline exceeded")
)

// lineReader reads CRLF-terminated lines against deadlines set for the whole line, not for
// each read, so that a client sending a byte now and then cannot stretch a command. A line
// cut off by a deadline or an error is never returned.
type lineReader struct {
	conn     net.Conn
	br       *bufio.Reader
	deadline time.Time // what the conn was last told
}

// Sessions' read and write buffers are reused: with a connection per message, as most MTAs
// send, two new 4 KiB buffers per session were a tenth of what a new ticket allocated.
var (
	readBuffers  = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4096) }}
	writeBuffers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4096) }}
)

func newLineReader(c net.Conn) *lineReader {
	br := readBuffers.Get().(*bufio.Reader)
	br.Reset(c)
	return &lineReader{conn: c, br: br}
}

// release gives the buffer back, with whatever the client sent that was not read dropped; the
// reader is not used again.
func (r *lineReader) release() {
	if r.br != nil {
		r.br.Reset(nil)
		readBuffers.Put(r.br)
		r.br = nil
	}
}

// setDeadline tells the conn about a deadline when it changed. It is a timer update in Go's
// network poller, not a system call, so doing it for every line of a message is cheap.
func (r *lineReader) setDeadline(t time.Time) error {
	if t.Equal(r.deadline) {
		return nil
	}
	r.deadline = t
	return r.conn.SetReadDeadline(t)
}

// readLine reads one line of at most limit bytes, its line ending included, into buf and
// returns it. A longer line is read to its end and dropped, with errLineTooLong. deadline is
// asked again before each read that has to wait for the network, so that DATA can earn time
// by the bytes it has received.
func (r *lineReader) readLine(buf []byte, limit int, deadline func() time.Time) ([]byte, error) {
	line := buf[:0]
	tooLong := false
	for {
		if err := r.setDeadline(deadline()); err != nil {
			return nil, err
		}
		frag, err := r.br.ReadSlice('\n')
		if !tooLong {
			if len(line)+len(frag) > limit {
				tooLong = true
				line = line[:0]
			} else {
				line = append(line, frag...)
			}
		}
		switch {
		case err == nil:
			if tooLong {
				return nil, errLineTooLong
			}
			return line, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		default:
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return nil, errDeadline
			}
			return nil, err
		}
	}
}

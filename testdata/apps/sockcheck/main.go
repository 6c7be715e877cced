// sockcheck is a traced Go service that looks at its own outgoing TCP
// socket the way libraries and cgo code may: FIONREAD, MSG_PEEK, poll and
// epoll readiness, SO_RCVLOWAT, and a sendfile body. The tests compare its
// answers with and without the agent.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// waiting is how many bytes the peer sends before the checks.
const waiting = 128

// Result is what the program saw on its socket.
type Result struct {
	FIONREAD      int  `json:"fionread"`
	Peek          int  `json:"peek"`
	PollIn        bool `json:"poll_in"`
	EpollIn       bool `json:"epoll_in"`
	LowatNotReady bool `json:"lowat_not_ready"` // SO_RCVLOWAT above what waits: not readable
	LowatReady    bool `json:"lowat_ready"`     // SO_RCVLOWAT at what waits: readable
	Read          int  `json:"read"`
	Sent          int  `json:"sent"`
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address")
	flag.Parse()
	mux := http.NewServeMux()
	// /check?peer=host:port&file=path: connect to peer, look at the bytes it
	// sent, then send it file with sendfile.
	mux.HandleFunc("/check", func(w http.ResponseWriter, r *http.Request) {
		res, err := check(r.URL.Query().Get("peer"), r.URL.Query().Get("file"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		json.NewEncoder(w).Encode(res)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {})
	log.Fatal(http.ListenAndServe(*addr, mux))
}

func check(peer, file string) (*Result, error) {
	c, err := net.Dial("tcp", peer)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	tc := c.(*net.TCPConn)
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil, err
	}
	res := &Result{}
	var cerr error
	err = rc.Control(func(u uintptr) { cerr = look(int(u), res) })
	if err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	buf := make([]byte, waiting)
	if res.Read, err = io.ReadFull(c, buf); err != nil {
		return nil, fmt.Errorf("read: %w", err)
	}
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	n, err := tc.ReadFrom(f) // sendfile(2)
	if err != nil {
		return nil, fmt.Errorf("sendfile: %w", err)
	}
	res.Sent = int(n)
	return res, tc.CloseWrite()
}

// look asks the kernel about fd once the peer's bytes are all there.
func look(fd int, res *Result) error {
	// Wait until every byte is there (MSG_PEEK), then ask FIONREAD: asked
	// first, it could see fewer bytes than the peek after it.
	deadline := time.Now().Add(5 * time.Second)
	for {
		p := make([]byte, 2*waiting)
		n, _, err := unix.Recvfrom(fd, p, unix.MSG_PEEK|unix.MSG_DONTWAIT)
		if err != nil && err != unix.EAGAIN {
			return fmt.Errorf("MSG_PEEK: %w", err)
		}
		res.Peek = n
		if n >= waiting || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	var err error
	if res.FIONREAD, err = unix.IoctlGetInt(fd, unix.SIOCINQ); err != nil {
		return fmt.Errorf("FIONREAD: %w", err)
	}
	res.PollIn = readable(fd)
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return err
	}
	defer unix.Close(ep)
	// A second epoll instance: Go's own netpoller holds fd edge-triggered.
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}); err != nil {
		return err
	}
	evs := make([]unix.EpollEvent, 1)
	n, err := unix.EpollWait(ep, evs, 0)
	if err != nil {
		return err
	}
	res.EpollIn = n == 1
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVLOWAT, waiting+1); err != nil {
		return err
	}
	res.LowatNotReady = !readable(fd)
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVLOWAT, waiting); err != nil {
		return err
	}
	res.LowatReady = readable(fd)
	return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVLOWAT, 1)
}

func readable(fd int) bool {
	p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	n, err := unix.Poll(p, 0)
	return err == nil && n == 1 && p[0].Revents&unix.POLLIN != 0
}

package main

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"
)

// Handlers that call another service, for the distributed-trace tests. The
// downstream URL comes from the "url" query parameter.

// call: GET url, answer with its status and body. With tp=..., the request
// carries that traceparent, as an application with its own SDK would.
func call(w http.ResponseWriter, r *http.Request) {
	req, err := http.NewRequest(http.MethodGet, r.URL.Query().Get("url"), nil)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if tp := r.URL.Query().Get("tp"); tp != "" {
		req.Header.Set("traceparent", tp)
	}
	client := http.DefaultClient
	if r.URL.Query().Get("insecure") == "1" { // a test server's own certificate
		client = insecure
	}
	forward(w, client, req)
}

// forward sends req and answers with the downstream status and body.
func forward(w http.ResponseWriter, client *http.Client, req *http.Request) {
	resp, err := client.Do(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	w.WriteHeader(resp.StatusCode)
	io.Copy(w, resp.Body)
}

// insecure speaks HTTPS (HTTP/2 when the server offers it) to servers with
// self-signed certificates.
var insecure = &http.Client{Transport: &http.Transport{
	TLSClientConfig:   &tls.Config{InsecureSkipVerify: true},
	ForceAttemptHTTP2: true,
}}

// fanout: n concurrent GETs of url from goroutines of this handler.
func fanout(w http.ResponseWriter, r *http.Request) {
	n, _ := strconv.Atoi(r.URL.Query().Get("n"))
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			resp, err := http.Get(fmt.Sprintf("%s-%d", r.URL.Query().Get("url"), i))
			if err != nil {
				errs <- err
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
}

// relay: POST this request's body to url (chunked when chunked=1, else with
// its Content-Length) and answer with the downstream body.
func relay(w http.ResponseWriter, r *http.Request) {
	var body io.Reader = r.Body
	if r.URL.Query().Get("chunked") == "1" {
		body = struct{ io.Reader }{r.Body} // unknown length: chunked encoding
	}
	req, err := http.NewRequest(http.MethodPost, r.URL.Query().Get("url"), body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if r.URL.Query().Get("chunked") != "1" {
		req.ContentLength = r.ContentLength
	}
	forward(w, http.DefaultClient, req)
}

// echo answers with the request body, read whole first: an HTTP/1 server
// cannot read a body once it has started the response.
func echo(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.Write(b)
}

// file serves this program's own executable: its body goes out with
// sendfile from inside the handler, so nothing is left to write when the
// request finishes.
func file(w http.ResponseWriter, r *http.Request) {
	exe, err := os.Executable()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	http.ServeFile(w, r, exe)
}

// stream sends its body in flushed parts, ?ms apart, Content-Length set:
// the last part leaves the handler with nothing more to write.
func stream(w http.ResponseWriter, r *http.Request) {
	ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
	w.Header().Set("Content-Length", "10")
	w.WriteHeader(http.StatusAccepted)
	for _, part := range []string{"01234", "56789"} {
		time.Sleep(time.Duration(ms) * time.Millisecond)
		io.WriteString(w, part)
		w.(http.Flusher).Flush()
	}
}

func callRoutes(mux *http.ServeMux) {
	mux.HandleFunc("/file", file)
	mux.HandleFunc("/stream", stream)
	mux.HandleFunc("/call", call)
	mux.HandleFunc("/fanout", fanout)
	mux.HandleFunc("/relay", relay)
	mux.HandleFunc("/echo", echo)
}

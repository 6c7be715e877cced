package spans

// knownMethods are the HTTP methods semantic conventions name; others are
// reported as _OTHER with the original kept aside.
var knownMethods = map[string]bool{
	"GET": true, "HEAD": true, "POST": true, "PUT": true, "DELETE": true,
	"CONNECT": true, "OPTIONS": true, "TRACE": true, "PATCH": true,
}

// HTTPMethod returns the span name for method and appends its
// http.request.method attribute(s) to attrs.
func HTTPMethod(method string, attrs []Attr) (string, []Attr) {
	if knownMethods[method] {
		return method, append(attrs, String("http.request.method", method))
	}
	return "HTTP", append(attrs, String("http.request.method", "_OTHER"), String("http.request.method_original", method))
}

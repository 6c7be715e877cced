// A Java service for the wire-path tests: com.sun.net.httpserver with a
// thread pool; /call calls another service with HttpURLConnection (blocking,
// on the handler's thread), /hclient with java.net.http.HttpClient (its own
// I/O threads); /check is the Java twin of sockcheck: what Java can ask of
// its own outgoing TCP socket (available(), that is FIONREAD, the bytes read)
// and a file sent with transferTo (sendfile). Run as a source file:
// java Server.java -addr HOST:PORT.
import com.sun.net.httpserver.HttpServer;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.HttpURLConnection;
import java.net.InetSocketAddress;
import java.net.URI;
import java.net.URL;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.channels.SocketChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.concurrent.Executors;

public class Server {
    public static void main(String[] args) throws Exception {
        String addr = "127.0.0.1:8080";
        for (int i = 0; i + 1 < args.length; i++) {
            if (args[i].equals("-addr")) {
                addr = args[i + 1];
            }
        }
        int colon = addr.lastIndexOf(':');
        HttpServer server = HttpServer.create(
                new InetSocketAddress(addr.substring(0, colon), Integer.parseInt(addr.substring(colon + 1))), 0);
        HttpClient client = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).build();
        server.createContext("/", ex -> {
            String path = ex.getRequestURI().getPath();
            String target = "http://127.0.0.1:" + param(ex.getRequestURI().getQuery(), "port") + param(ex.getRequestURI().getQuery(), "path");
            int code = 200;
            String body;
            try {
                if (path.equals("/call")) {
                    HttpURLConnection c = (HttpURLConnection) new URL(target).openConnection();
                    try (InputStream in = c.getInputStream()) {
                        in.readAllBytes();
                    }
                    body = String.valueOf(c.getResponseCode());
                } else if (path.equals("/check")) {
                    body = check(param(ex.getRequestURI().getQuery(), "peer"), param(ex.getRequestURI().getQuery(), "file"));
                } else if (path.equals("/hclient")) {
                    HttpResponse<String> r = client.send(HttpRequest.newBuilder(URI.create(target)).build(),
                            HttpResponse.BodyHandlers.ofString());
                    body = String.valueOf(r.statusCode());
                } else {
                    body = "hello from java " + path;
                }
            } catch (Exception e) {
                code = 502;
                body = e.toString();
            }
            byte[] b = body.getBytes();
            ex.sendResponseHeaders(code, b.length);
            try (OutputStream os = ex.getResponseBody()) {
                os.write(b);
            }
        });
        server.setExecutor(Executors.newFixedThreadPool(4));
        server.start();
    }

    static final int WAITING = 128;

    static String check(String peer, String file) throws Exception {
        int colon = peer.lastIndexOf(':');
        try (SocketChannel ch = SocketChannel.open(new InetSocketAddress(peer.substring(0, colon), Integer.parseInt(peer.substring(colon + 1))))) {
            InputStream in = ch.socket().getInputStream();
            long deadline = System.currentTimeMillis() + 5000;
            int available = in.available();
            while (available < WAITING && System.currentTimeMillis() < deadline) {
                Thread.sleep(10);
                available = in.available();
            }
            ByteBuffer buf = ByteBuffer.allocate(WAITING);
            while (buf.hasRemaining() && ch.read(buf) > 0) {
            }
            long sent = 0;
            try (FileChannel f = FileChannel.open(Path.of(file), StandardOpenOption.READ)) {
                while (sent < f.size()) {
                    sent += f.transferTo(sent, f.size() - sent, ch);
                }
            }
            ch.shutdownOutput();
            return "{\"fionread\":" + available + ",\"read\":" + buf.position() + ",\"sent\":" + sent + "}";
        }
    }

    static String param(String query, String name) {
        if (query != null) {
            for (String kv : query.split("&")) {
                if (kv.startsWith(name + "=")) {
                    return kv.substring(name.length() + 1);
                }
            }
        }
        return "";
    }
}

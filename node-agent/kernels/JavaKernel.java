// sandpit Java kernel: one persistent JShell (jdk.jshell, executing in this
// JVM), run by bridge.py as `java JavaKernel.java` (the JDK's single-file
// launch) with requests on fd 3 and events to fd 4 (the protocol is in
// bridge.py). System.out and System.err are the bridge's pipes, so output
// streams as written. A cell is split into snippets as jshell does; they run
// in order until one is rejected (a compile error) or throws; the value of the
// last one, when it is an expression, is the run's result (jshell's text of it).
// display(value, mimeTypes...) (IJava's name), defined in the shell before the
// first cell that names it, emits a value as a result that is not the main
// one (JavaKernel.display).
import java.io.BufferedReader;
import java.io.FileInputStream;
import java.io.FileOutputStream;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.lang.reflect.Field;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Base64;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Collectors;
import jdk.jshell.Diag;
import jdk.jshell.EvalException;
import jdk.jshell.JShell;
import jdk.jshell.Snippet;
import jdk.jshell.SnippetEvent;
import jdk.jshell.SourceCodeAnalysis;
import jdk.jshell.UnresolvedReferenceException;
import jdk.jshell.VarSnippet;

public class JavaKernel {
    private static OutputStream events;
    // Set by SIGINT (the agent's interrupt): a stopped snippet's event says
    // nothing of it.
    private static volatile boolean interrupted;

    public static void main(String[] args) throws Exception {
        BufferedReader reqs = new BufferedReader(
                new InputStreamReader(new FileInputStream("/dev/fd/3"), StandardCharsets.UTF_8));
        events = new FileOutputStream("/dev/fd/4");
        JShell shell = JShell.builder().executionEngine("local").out(System.out).err(System.err).build();
        // The first eval loads the compiler: pay for it before ready.
        shell.eval("int $sandpit_warmup = 0;");
        sun.misc.Signal.handle(new sun.misc.Signal("INT"), s -> {
            interrupted = true;
            shell.stop();
        });
        send("{\"type\":\"ready\"}");
        String line;
        while ((line = reqs.readLine()) != null) {
            Map<String, Object> req = Json.object(line);
            @SuppressWarnings("unchecked")
            Map<String, Object> env = req.get("env") instanceof Map ? (Map<String, Object>) req.get("env") : Map.of();
            Map<String, String> saved = Env.apply(env);
            interrupted = false;
            try {
                run(shell, req.get("code") instanceof String ? (String) req.get("code") : "");
            } catch (Throwable t) {
                error(t.getClass().getSimpleName(), String.valueOf(t.getMessage()), stack(t));
            } finally {
                Env.restore(saved);
            }
            send("{\"type\":\"done\"}");
        }
    }

    // Snippets run in a class loader of jshell's whose parent is the system
    // one, which has the kernel's class when it runs from JavaKernel.class.
    // When the JDK launched JavaKernel.java from source it does not: then
    // the value reaches the kernel as a java.util.logging record's
    // parameters, through a handler on a logger no one else uses.
    static final String DISPLAY_HEAD = "void display(Object value, String... mimeTypes) {\n";
    static final String DISPLAY_CLASS = DISPLAY_HEAD
            + "  try {\n"
            + "    Class.forName(\"JavaKernel\", true, ClassLoader.getSystemClassLoader())\n"
            + "        .getMethod(\"display\", Object.class, String[].class).invoke(null, value, mimeTypes);\n"
            + "  } catch (java.lang.reflect.InvocationTargetException e) {\n"
            + "    if (e.getCause() instanceof RuntimeException) throw (RuntimeException) e.getCause();\n"
            + "    throw new RuntimeException(e.getCause());\n"
            + "  } catch (ReflectiveOperationException e) {\n"
            + "    throw new IllegalStateException(e);\n"
            + "  }\n"
            + "}";
    static final String DISPLAY_SOURCE = DISPLAY_HEAD
            + "  var r = new java.util.logging.LogRecord(java.util.logging.Level.INFO, \"display\");\n"
            + "  r.setParameters(new Object[] {value, mimeTypes});\n"
            + "  java.util.logging.Logger.getLogger(\"sandpit.display\").log(r);\n"
            + "}";
    private static java.util.logging.Logger displayLogger; // held: loggers are weakly kept
    private static boolean displayDefined;

    // Defined before the first cell that names it (compiling it at the
    // start would cost every Java kernel a few hundred ms); a cell that
    // defines its own display() after that replaces it.
    static void defineDisplay(JShell shell, String code) {
        if (displayDefined || !code.contains("display")) return;
        displayDefined = true;
        boolean fromClass = JavaKernel.class.getClassLoader() == ClassLoader.getSystemClassLoader();
        if (!fromClass) {
            displayLogger = java.util.logging.Logger.getLogger("sandpit.display");
            displayLogger.setUseParentHandlers(false);
            displayLogger.addHandler(new java.util.logging.Handler() {
                @Override
                public void publish(java.util.logging.LogRecord r) {
                    Object[] p = r.getParameters();
                    if (p != null && p.length == 2 && (p[1] == null || p[1] instanceof String[]))
                        display(p[0], (String[]) p[1]);
                }

                @Override
                public void flush() {}

                @Override
                public void close() {}
            });
        }
        for (SnippetEvent ev : shell.eval(fromClass ? DISPLAY_CLASS : DISPLAY_SOURCE))
            if (ev.status() != Snippet.Status.VALID)
                System.err.println("sandpit: display() is not defined: " + ev.status());
    }

    static final Map<String, String> MIME_KEYS = Map.of("text/plain", "text", "text/html", "html",
            "text/markdown", "markdown", "image/svg+xml", "svg", "text/latex", "latex", "image/png", "png");

    // A result that is not the main one: text (String.valueOf), or for an
    // image (java.awt.image.RenderedImage) a PNG; a String given MIME types
    // (display("<b>hi</b>", "text/html")) is that content.
    public static void display(Object value, String[] mimeTypes) {
        StringBuilder ev = new StringBuilder("{\"type\":\"result\"");
        List<String> mimes = mimeTypes == null ? List.of() : Arrays.asList(mimeTypes);
        for (String m : mimes)
            if (!MIME_KEYS.containsKey(m))
                throw new IllegalArgumentException("display: unknown MIME type " + m + " (known: " +
                        String.join(", ", new java.util.TreeSet<>(MIME_KEYS.keySet())) + ")");
        String text = String.valueOf(value);
        byte[] png = null;
        if (value instanceof byte[] && mimes.contains("image/png")) {
            png = (byte[]) value;
            text = "<image/png, " + png.length + " bytes>";
        } else if (isImage(value)) {
            png = Images.png(value);
            text = Images.describe(value);
        } else if (value instanceof String) {
            for (String m : mimes)
                if (!m.equals("text/plain") && !m.equals("image/png"))
                    ev.append(",").append(Json.quote(MIME_KEYS.get(m))).append(":").append(Json.quote(text));
        }
        if (png != null)
            ev.append(",\"png\":").append(Json.quote(Base64.getEncoder().encodeToString(png)));
        ev.append(",\"text\":").append(Json.quote(text)).append(",\"is_main_result\":false}");
        send(ev.toString());
    }

    static boolean isImage(Object v) {
        try {
            return v instanceof java.awt.image.RenderedImage;
        } catch (LinkageError e) { // a JDK without java.desktop
            return false;
        }
    }

    // Apart, so java.desktop's classes load only for an image.
    static final class Images {
        static byte[] png(Object v) {
            java.io.ByteArrayOutputStream out = new java.io.ByteArrayOutputStream();
            try {
                if (!javax.imageio.ImageIO.write((java.awt.image.RenderedImage) v, "png", out))
                    throw new IllegalArgumentException("display: no PNG writer for this image");
            } catch (java.io.IOException e) {
                throw new java.io.UncheckedIOException(e);
            }
            return out.toByteArray();
        }

        static String describe(Object v) {
            java.awt.image.RenderedImage im = (java.awt.image.RenderedImage) v;
            return "<image " + im.getWidth() + "x" + im.getHeight() + ">";
        }
    }

    static void run(JShell shell, String code) {
        defineDisplay(shell, code);
        SourceCodeAnalysis sca = shell.sourceCodeAnalysis();
        List<String> snippets = new ArrayList<>();
        String rest = code;
        while (!rest.isBlank()) {
            SourceCodeAnalysis.CompletionInfo ci = sca.analyzeCompletion(rest);
            if (ci.completeness() == SourceCodeAnalysis.Completeness.EMPTY) break;
            if (!ci.completeness().isComplete()) {
                // Incomplete: jshell's own diagnostics say what is wrong.
                snippets.add(rest);
                break;
            }
            snippets.add(ci.source());
            rest = ci.remaining();
        }
        for (int i = 0; i < snippets.size(); i++) {
            String src = snippets.get(i);
            String value = null;
            boolean expression = false;
            List<SnippetEvent> evs = shell.eval(src);
            if (interrupted) {
                error("KeyboardInterrupt", "interrupted", "");
                return;
            }
            for (SnippetEvent ev : evs) {
                if (ev.causeSnippet() != null) continue;
                Snippet sn = ev.snippet();
                if (ev.status() == Snippet.Status.REJECTED) {
                    String diags = shell.diagnostics(sn).map(d -> diag(src, d)).collect(Collectors.joining("\n"));
                    error("CompilationError", firstLine(shell, sn), diags);
                    return;
                }
                if (ev.exception() != null) {
                    exception(ev.exception());
                    return;
                }
                expression = sn.kind() == Snippet.Kind.EXPRESSION ||
                        (sn instanceof VarSnippet && sn.subKind() == Snippet.SubKind.TEMP_VAR_EXPRESSION_SUBKIND);
                if (expression && sn instanceof VarSnippet && "void".equals(((VarSnippet) sn).typeName()))
                    expression = false;
                value = ev.value();
            }
            if (i == snippets.size() - 1 && expression && value != null)
                send("{\"type\":\"result\",\"text\":" + Json.quote(value) + ",\"is_main_result\":true}");
        }
    }

    static String firstLine(JShell shell, Snippet sn) {
        return shell.diagnostics(sn).findFirst().map(d -> d.getMessage(null)).orElse("rejected");
    }

    static String diag(String src, Diag d) {
        long pos = d.getStartPosition();
        int line = 1;
        for (int i = 0; i < pos && i < src.length(); i++)
            if (src.charAt(i) == '\n') line++;
        return "|  Error (line " + line + "): " + d.getMessage(null);
    }

    static void exception(Exception e) {
        if (e instanceof EvalException) {
            EvalException ee = (EvalException) e;
            String cls = ee.getExceptionClassName();
            String name = cls.substring(cls.lastIndexOf('.') + 1);
            if (cls.equals("jdk.jshell.spi.ExecutionControl$StoppedException")) name = "KeyboardInterrupt";
            error(name, ee.getMessage() == null ? "" : ee.getMessage(), cls + ": " + (ee.getMessage() == null ? "" : ee.getMessage()) + "\n" + frames(ee));
        } else if (e instanceof UnresolvedReferenceException) {
            error("UnresolvedReferenceException", e.getMessage(), e.getMessage());
        } else {
            error(e.getClass().getSimpleName(), String.valueOf(e.getMessage()), stack(e));
        }
    }

    // The user's frames: a snippet's are in the file #N (jshell's snippet id).
    static String frames(Throwable t) {
        StringBuilder sb = new StringBuilder();
        for (StackTraceElement f : t.getStackTrace()) {
            String file = f.getFileName();
            if (file == null || !file.startsWith("#")) continue;
            String m = f.getMethodName();
            sb.append("\tat ").append(m.isEmpty() ? "<cell>" : m).append('(').append(file).append(':')
                    .append(f.getLineNumber()).append(")\n");
        }
        if (t.getCause() != null) sb.append("Caused by: ").append(t.getCause()).append('\n').append(frames(t.getCause()));
        return sb.toString();
    }

    static String stack(Throwable t) {
        StringWriter w = new StringWriter();
        t.printStackTrace(new PrintWriter(w));
        return w.toString();
    }

    static void error(String name, String value, String traceback) {
        send("{\"type\":\"error\",\"name\":" + Json.quote(name) + ",\"value\":" + Json.quote(value) +
                ",\"traceback\":" + Json.quote(traceback) + "}");
    }

    static synchronized void send(String json) {
        System.out.flush();
        System.err.flush();
        try {
            events.write((json + "\n").getBytes(StandardCharsets.UTF_8));
            events.flush();
        } catch (java.io.IOException e) {
            System.exit(1);
        }
    }

    // A run's env: the JVM reads the environment once, so its map is edited
    // in place (bridge.py opens java.lang and java.util for it), which
    // System.getenv() and ProcessBuilder both read.
    static final class Env {
        @SuppressWarnings("unchecked")
        static Map<String, String> map() throws ReflectiveOperationException {
            Class<?> pe = Class.forName("java.lang.ProcessEnvironment");
            Field f = pe.getDeclaredField("theUnmodifiableEnvironment");
            f.setAccessible(true);
            Object um = f.get(null);
            Field m = Class.forName("java.util.Collections$UnmodifiableMap").getDeclaredField("m");
            m.setAccessible(true);
            return (Map<String, String>) m.get(um);
        }

        static Map<String, String> apply(Map<String, Object> env) {
            Map<String, String> saved = new LinkedHashMap<>();
            if (env.isEmpty()) return saved;
            try {
                Map<String, String> m = map();
                for (Map.Entry<String, Object> e : env.entrySet()) {
                    saved.put(e.getKey(), m.get(e.getKey()));
                    m.put(e.getKey(), String.valueOf(e.getValue()));
                }
            } catch (ReflectiveOperationException | RuntimeException e) {
                System.err.println("sandpit: cannot set the run's env: " + e);
            }
            return saved;
        }

        static void restore(Map<String, String> saved) {
            if (saved.isEmpty()) return;
            try {
                Map<String, String> m = map();
                for (Map.Entry<String, String> e : saved.entrySet()) {
                    if (e.getValue() == null) m.remove(e.getKey());
                    else m.put(e.getKey(), e.getValue());
                }
            } catch (ReflectiveOperationException | RuntimeException e) {
                System.err.println("sandpit: cannot restore the env: " + e);
            }
        }
    }

    // Just enough JSON for the requests (objects, strings, and the rest
    // skipped as values) and for the events (quote).
    static final class Json {
        private final String s;
        private int i;

        private Json(String s) {
            this.s = s;
        }

        @SuppressWarnings("unchecked")
        static Map<String, Object> object(String s) {
            Object v = new Json(s).value();
            return v instanceof Map ? (Map<String, Object>) v : Map.of();
        }

        private void ws() {
            while (i < s.length() && Character.isWhitespace(s.charAt(i))) i++;
        }

        private Object value() {
            ws();
            if (i >= s.length()) throw new IllegalArgumentException("truncated JSON");
            char c = s.charAt(i);
            if (c == '{') {
                Map<String, Object> m = new LinkedHashMap<>();
                i++;
                ws();
                if (s.charAt(i) == '}') {
                    i++;
                    return m;
                }
                while (true) {
                    ws();
                    String k = string();
                    ws();
                    i++; // ':'
                    m.put(k, value());
                    ws();
                    if (s.charAt(i++) == '}') return m;
                }
            }
            if (c == '[') {
                List<Object> l = new ArrayList<>();
                i++;
                ws();
                if (s.charAt(i) == ']') {
                    i++;
                    return l;
                }
                while (true) {
                    l.add(value());
                    ws();
                    if (s.charAt(i++) == ']') return l;
                }
            }
            if (c == '"') return string();
            int start = i;
            while (i < s.length() && ",}] \t\r\n".indexOf(s.charAt(i)) < 0) i++;
            return s.substring(start, i);
        }

        private String string() {
            StringBuilder sb = new StringBuilder();
            i++; // '"'
            while (true) {
                char c = s.charAt(i++);
                if (c == '"') return sb.toString();
                if (c != '\\') {
                    sb.append(c);
                    continue;
                }
                char e = s.charAt(i++);
                switch (e) {
                    case 'n': sb.append('\n'); break;
                    case 't': sb.append('\t'); break;
                    case 'r': sb.append('\r'); break;
                    case 'b': sb.append('\b'); break;
                    case 'f': sb.append('\f'); break;
                    case 'u': sb.append((char) Integer.parseInt(s.substring(i, i + 4), 16)); i += 4; break;
                    default: sb.append(e);
                }
            }
        }

        static String quote(String v) {
            StringBuilder sb = new StringBuilder("\"");
            for (int k = 0; k < v.length(); k++) {
                char c = v.charAt(k);
                switch (c) {
                    case '"': sb.append("\\\""); break;
                    case '\\': sb.append("\\\\"); break;
                    case '\n': sb.append("\\n"); break;
                    case '\r': sb.append("\\r"); break;
                    case '\t': sb.append("\\t"); break;
                    default:
                        if (c < 0x20) sb.append(String.format("\\u%04x", (int) c));
                        else sb.append(c);
                }
            }
            return sb.append('"').toString();
        }
    }
}

// The feature vector and the outcome models, read from the same
// `propensity-model/v2` artifacts `propensity run` serves.
//
// Owns: the page categories and outcomes of the shipped config/propensity.toml
// (mirrored here, the app reads no TOML), the learned vocabulary of the
// artifacts, the accumulator layout, the vector (in the artifacts' feature
// order, checked name by name at load) and the logistic scores. Weights are
// folded with the standardization once: p = sigmoid(b' + sum (w_i / s_i) x_i)
// with b' = intercept - sum w_i m_i / s_i, as the engine does.
package propensity.kstreams;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.LocalDateTime;
import java.time.ZoneOffset;
import java.util.ArrayList;
import java.util.List;

final class Models {
    /** Page categories of config/propensity.toml, in order: name, then (path, exact?) matchers. */
    static final String[] CATEGORIES = {"home", "product", "pricing", "cart", "checkout", "webinar", "loan", "blog", "support"};
    private static final Object[][] MATCHERS = {
        {"/", 0, true}, {"/products", 1, false}, {"/pricing", 2, false}, {"/cart", 3, false},
        {"/checkout", 4, false}, {"/webinars", 5, false}, {"/loans", 6, false}, {"/apply", 6, false},
        {"/blog", 7, false}, {"/help", 8, false}, {"/contact", 8, false},
    };
    static final String[] KINDS = {"page_view", "search", "form_fill", "chat", "custom"};
    static final String[] DEVICES = {"desktop", "mobile", "tablet", "other"};
    static final String[] OUTCOMES = {"purchase", "webinar_signup", "application_complete"};
    static final String[] WEEKDAYS = {"mon", "tue", "wed", "thu", "fri", "sat", "sun"};
    static final int SCALARS = 7; // forms.started .. session.secs_since_last_event
    static final int S_STARTED = 0, S_SUBMITTED = 1, S_ABANDONED = 2, S_MAX_FIELDS = 3, S_CHAT = 4, S_NO_RESULTS = 5,
            S_SINCE_LAST = 6;
    static final float MAX_DWELL_SECS = 1800f;

    final int ncat = CATEGORIES.length + 1;
    final String[] pathSegment, customEvent, formId, browser, os, trafficSource, referrerHost;
    // Accumulator layout (as the engine's): kinds, views, dwell, path segments, custom events, forms started, scalars.
    final int accViews, accDwell, accPaths, accCustom, accForms, accScalars, accLen;
    final int dim;
    final String[] versions = new String[OUTCOMES.length];
    final float[][] folded = new float[OUTCOMES.length][];
    final double[] bias = new double[OUTCOMES.length];

    private Models(JsonNode vocabulary) {
        pathSegment = strings(vocabulary.path("path_segment"));
        customEvent = strings(vocabulary.path("custom_event"));
        formId = strings(vocabulary.path("form_id"));
        browser = strings(vocabulary.path("browser"));
        os = strings(vocabulary.path("os"));
        trafficSource = strings(vocabulary.path("traffic_source"));
        referrerHost = strings(vocabulary.path("referrer_host"));
        accViews = KINDS.length;
        accDwell = accViews + ncat;
        accPaths = accDwell + ncat;
        accCustom = accPaths + pathSegment.length + 1;
        accForms = accCustom + customEvent.length + 1;
        accScalars = accForms + formId.length + 1;
        accLen = accScalars + SCALARS;
        dim = names().size();
    }

    static Models load(Path dir) throws IOException {
        ObjectMapper json = new ObjectMapper();
        Models models = null;
        for (int i = 0; i < OUTCOMES.length; i++) {
            JsonNode a = json.readTree(Files.readAllBytes(dir.resolve(OUTCOMES[i] + ".json")));
            if (!"propensity-model/v2".equals(a.path("format").asText())) {
                throw new IOException(OUTCOMES[i] + ": not a propensity-model/v2 artifact");
            }
            if (models == null) {
                models = new Models(a.path("vocabulary"));
            }
            List<String> expected = models.names();
            List<String> names = new ArrayList<>();
            a.path("feature_names").forEach(n -> names.add(n.asText()));
            if (!names.equals(expected)) {
                throw new IOException(OUTCOMES[i] + ": feature names differ from this app's vector (other config or vocabulary)");
            }
            double b = a.path("intercept").asDouble();
            float[] w = new float[models.dim];
            for (int k = 0; k < models.dim; k++) {
                double wk = a.path("weights").get(k).asDouble();
                double m = a.path("means").get(k).asDouble();
                double s = a.path("stds").get(k).asDouble();
                w[k] = (float) (wk / s);
                b -= wk * m / s;
            }
            models.folded[i] = w;
            models.bias[i] = b;
            models.versions[i] = a.path("model_version").asText();
        }
        return models;
    }

    String describe() {
        return OUTCOMES.length + " models, " + dim + " features";
    }

    private static String[] strings(JsonNode array) {
        List<String> out = new ArrayList<>();
        array.forEach(v -> out.add(v.asText()));
        return out.toArray(String[]::new);
    }

    /** The feature names in vector order (must equal the artifacts' feature_names). */
    List<String> names() {
        List<String> n = new ArrayList<>();
        for (String k : KINDS) n.add("events." + k);
        n.add("events.total");
        for (String c : categoryNames()) n.add("views." + c);
        for (String c : categoryNames()) n.add("dwell_secs." + c);
        group(n, "path_segment", pathSegment);
        group(n, "custom_event", customEvent);
        group(n, "form_started", formId);
        n.addAll(List.of("forms.started", "forms.submitted", "forms.abandoned", "forms.max_fields_completed",
                "chat.requested", "search.without_results", "session.secs_since_last_event",
                "session.duration_secs", "session.distinct_pages"));
        for (String c : categoryNames()) n.add("view_share." + c);
        for (String c : categoryNames()) n.add("current_page." + c);
        for (String k : KINDS) n.add("current_event." + k);
        for (String d : DEVICES) n.add("device." + d);
        group(n, "browser", browser);
        group(n, "os", os);
        group(n, "traffic_source", trafficSource);
        group(n, "referrer", referrerHost);
        n.addAll(List.of("time.hour_sin", "time.hour_cos", "time.month_sin", "time.month_cos"));
        for (String d : WEEKDAYS) n.add("time.weekday." + d);
        n.add("time.weekend");
        return n;
    }

    private List<String> categoryNames() {
        List<String> c = new ArrayList<>(List.of(CATEGORIES));
        c.add("other");
        return c;
    }

    private static void group(List<String> n, String prefix, String[] values) {
        for (String v : values) n.add(prefix + "." + v);
        n.add(prefix + ".other");
    }

    /** Longest matching category of a URL path; `other` (= CATEGORIES.length) when none. */
    static int categoryOf(String path) {
        int best = CATEGORIES.length, bestLen = -1;
        for (Object[] m : MATCHERS) {
            String p = (String) m[0];
            boolean fits = (Boolean) m[2] ? path.equals(p) : path.startsWith(p);
            if (fits && p.length() > bestLen) {
                best = (Integer) m[1];
                bestLen = p.length();
            }
        }
        return best;
    }

    /** Index of a value in a vocabulary field (trimmed, ASCII case-insensitive); the last slot is "other". */
    static int indexOf(String[] values, String raw) {
        String v = raw.trim();
        if (!v.isEmpty() && v.length() <= 64) {
            for (int i = 0; i < values.length; i++) {
                if (values[i].equalsIgnoreCase(v)) return i;
            }
        }
        return values.length;
    }

    private static float ln1p(float x) {
        return (float) Math.log1p(x);
    }

    private static final float TAU = (float) (2 * Math.PI);

    /** The feature vector of a session at an event (event time, and its local time for the calendar features). */
    void vector(VisitorState s, long eventMs, long localMs, float[] x) {
        java.util.Arrays.fill(x, 0f);
        float[] c = s.counters;
        int i = 0;
        float total = 0;
        for (int k = 0; k < KINDS.length; k++) {
            x[i++] = ln1p(c[k]);
            total += c[k];
        }
        x[i++] = ln1p(total);
        for (int k = accViews; k < accLen; k++) x[i++] = ln1p(c[k]);
        x[i++] = ln1p(Math.max(0, eventMs - s.sessionStartMs) / 1000f);
        x[i++] = ln1p(s.distinctPages.length);
        float views = 0;
        for (int k = 0; k < ncat; k++) views += c[accViews + k];
        for (int k = 0; k < ncat; k++) x[i + k] = views > 0 ? c[accViews + k] / views : 0f;
        i += ncat;
        i = oneHot(x, i, s.currentCategory, ncat);
        i = oneHot(x, i, s.currentKind, KINDS.length);
        i = oneHot(x, i, s.device, DEVICES.length);
        i = oneHot(x, i, s.browser, browser.length + 1);
        i = oneHot(x, i, s.os, os.length + 1);
        i = oneHot(x, i, s.source, trafficSource.length + 1);
        i = oneHot(x, i, s.referrer, referrerHost.length + 1);
        LocalDateTime local = LocalDateTime.ofEpochSecond(Math.floorDiv(localMs, 1000), 0, ZoneOffset.UTC);
        float hour = (float) local.getHour() / 24f * TAU;
        float month = (float) (local.getMonthValue() - 1) / 12f * TAU;
        x[i++] = (float) Math.sin(hour);
        x[i++] = (float) Math.cos(hour);
        x[i++] = (float) Math.sin(month);
        x[i++] = (float) Math.cos(month);
        int weekday = local.getDayOfWeek().getValue() - 1; // 0 = Monday
        x[i + weekday] = 1f;
        i += WEEKDAYS.length;
        x[i] = weekday >= 5 ? 1f : 0f;
    }

    private static int oneHot(float[] x, int i, int index, int n) {
        if (index >= 0 && index < n) x[i + index] = 1f;
        return i + n;
    }

    double probability(int outcome, float[] x) {
        double z = bias[outcome];
        float[] w = folded[outcome];
        for (int k = 0; k < x.length; k++) {
            if (x[k] != 0f) z += (double) w[k] * x[k];
        }
        return 1.0 / (1.0 + Math.exp(-z));
    }
}

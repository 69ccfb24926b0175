// Per-event work of the Kafka Streams app: the consent gate (latest consent
// state from the KTable join), lateness and duplicate checks, sessions, the
// feature accumulators, outcomes achieved, scores and the offer decision,
// with the visitor's state read from and written back to the logged store.
// Forwards one offer JSON (keyed by visitor_id) when an action map fires.
package propensity.kstreams;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.time.Instant;
import java.time.OffsetDateTime;
import java.util.Arrays;
import org.apache.kafka.streams.processor.api.Processor;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.state.KeyValueStore;

final class VisitorProcessor implements Processor<String, PropensityStreams.GatedEvent, String, String> {
    private static final long SESSION_TIMEOUT_MS = 1_200_000;
    private static final long IDLE_EXPIRY_MS = 3_600_000;
    private static final long ALLOWED_LATENESS_MS = 300_000;

    private final Models models;
    private final ObjectMapper json = new ObjectMapper();
    private final float[] vector;
    private final double[] probability = new double[Models.OUTCOMES.length];
    private ProcessorContext<String, String> context;
    private KeyValueStore<String, VisitorState> store;

    VisitorProcessor(Models models) {
        this.models = models;
        this.vector = new float[models.dim];
    }

    @Override
    public void init(ProcessorContext<String, String> context) {
        this.context = context;
        this.store = context.getStateStore(PropensityStreams.VISITOR_STORE);
    }

    @Override
    public void process(Record<String, PropensityStreams.GatedEvent> record) {
        String visitor = record.key();
        if (visitor == null || record.value().event() == null) {
            return;
        }
        JsonNode consent = parse(record.value().consent());
        // Consent gate: no record (opt_in), an erasure, or a state without
        // tracking: the event is dropped, and whatever was held is forgotten.
        if (consent == null || consent.path("erase").asBoolean(false)
                || !consent.path("purposes").path("tracking").asBoolean(false)) {
            if (consent != null) {
                store.delete(visitor);
            }
            return;
        }
        JsonNode event = parse(record.value().event());
        if (event == null || !event.path("event_id").isTextual() || !event.path("timestamp").isTextual()
                || !visitor.equals(event.path("visitor_id").asText(null))) {
            return; // the engine dead-letters these; the preloaded input has none
        }
        OffsetDateTime time;
        try {
            time = OffsetDateTime.parse(event.path("timestamp").asText().replace(' ', 'T'));
        } catch (RuntimeException e) {
            return;
        }
        long t = time.toInstant().toEpochMilli();
        long local = t + time.getOffset().getTotalSeconds() * 1000L;

        VisitorState s = store.get(visitor);
        if (s == null || (s.lastEventMs != VisitorState.NONE && t - s.lastEventMs > IDLE_EXPIRY_MS)) {
            s = new VisitorState();
        }
        if (s.lastEventMs != VisitorState.NONE && t < s.lastEventMs - ALLOWED_LATENESS_MS) {
            return; // late
        }
        String sessionId = event.path("session_id").isTextual() ? event.path("session_id").asText() : null;
        boolean newSession = s.counters.length == 0
                || (sessionId != null ? !(s.explicitSession && s.sessionId.equals(sessionId))
                        : s.explicitSession || t - s.sessionLastMs > SESSION_TIMEOUT_MS);
        if (newSession) {
            String id = sessionId != null ? sessionId
                    : String.format("auto-%016x", (long) visitor.hashCode() * 0x9E3779B97F4A7C15L ^ t);
            s.newSession(id, sessionId != null, t, models.accLen);
        }
        String eventId = event.path("event_id").asText();
        int idHash = eventId.hashCode();
        for (int h : s.seenEvents) {
            if (h == idHash) return; // duplicate
        }
        s.seenEvents = append(s.seenEvents, idHash, VisitorState.MAX_EVENT_IDS);
        s.lastEventMs = s.lastEventMs == VisitorState.NONE ? t : Math.max(s.lastEventMs, t);
        long previousEventMs = s.events > 0 ? s.sessionLastMs : VisitorState.NONE;
        s.sessionLastMs = Math.max(s.sessionLastMs, t);
        s.events++;

        String kind = event.path("type").asText();
        int kindIndex = Arrays.asList(Models.KINDS).indexOf(kind);
        if (kindIndex < 0) {
            return;
        }
        JsonNode page = event.path("page");
        String path = page.path("url").isTextual() ? urlPath(page.path("url").asText()) : null;
        observe(s, event, kindIndex, path, previousEventMs, t);
        if (path != null) {
            s.currentPath = path;
        }
        if (s.trafficSource.isEmpty() && event.path("traffic").path("source").isTextual()) {
            s.trafficSource = event.path("traffic").path("source").asText().toLowerCase();
        }
        JsonNode form = event.path("form");
        for (int i = 0; i < Models.OUTCOMES.length; i++) {
            if ((s.achieved & (1 << i)) == 0 && achieves(i, kind, path, form)) {
                s.achieved |= 1 << i;
            }
        }
        boolean allAchieved = s.achieved == (1 << Models.OUTCOMES.length) - 1;
        if (!allAchieved) {
            models.vector(s, t, local, vector);
            for (int i = 0; i < probability.length; i++) {
                probability[i] = (s.achieved & (1 << i)) == 0 ? models.probability(i, vector) : Double.NaN;
            }
        } else {
            Arrays.fill(probability, Double.NaN);
        }
        decide(s, visitor, eventId, t, consent.path("purposes"), record.timestamp());
        store.put(visitor, s);
    }

    private void decide(VisitorState s, String visitor, String eventId, long t, JsonNode purposes, long recordTs) {
        for (int mi = 0; mi < Offers.MAPS.length; mi++) {
            Offers.ActionMap map = Offers.MAPS[mi];
            double p = probability[map.outcome()];
            if (Double.isNaN(p) || !map.fires(p, s.lastProbability[map.outcome()])) continue;
            if (s.events < map.minEvents() || (map.urlPrefix() != null && !s.currentPath.startsWith(map.urlPrefix()))) {
                continue;
            }
            if (!purposes.path(map.purpose()).asBoolean(false)) continue;
            if (s.offersPerMap[mi] >= 1 || s.offersTotal >= Offers.MAX_PER_SESSION
                    || (s.lastOfferMs != VisitorState.NONE && t - s.lastOfferMs < Offers.MIN_GAP_MS)) {
                continue;
            }
            s.offersPerMap[mi]++;
            s.offersTotal++;
            s.lastOfferMs = t;
            ObjectNode offer = json.createObjectNode();
            offer.put("offer_id", Long.toHexString(((long) visitor.hashCode() << 32) ^ eventId.hashCode() ^ mi));
            offer.put("visitor_id", visitor);
            offer.put("session_id", s.sessionId);
            offer.put("action_map", map.name());
            try {
                offer.set("action", json.readTree(map.actionJson()));
            } catch (IOException e) {
                throw new IllegalStateException(e);
            }
            offer.put("purpose", map.purpose());
            offer.put("outcome", Models.OUTCOMES[map.outcome()]);
            offer.put("probability", p);
            offer.put("model_version", models.versions[map.outcome()]);
            offer.put("trigger_event_id", eventId);
            offer.put("event_time", Instant.ofEpochMilli(t).toString());
            offer.put("decided_at", Instant.ofEpochMilli(t).toString());
            offer.putArray("explanation");
            context.forward(new Record<>(visitor, offer.toString(), recordTs));
            break;
        }
        for (int i = 0; i < probability.length; i++) {
            if (!Double.isNaN(probability[i])) s.lastProbability[i] = (float) probability[i];
        }
    }

    /** Folds one event into the session's accumulators (the engine's observe_with_info). */
    private void observe(VisitorState s, JsonNode event, int kind, String path, long previousEventMs, long t) {
        Models m = models;
        float[] c = s.counters;
        c[kind] += 1;
        s.currentKind = kind;
        if (path != null) {
            int cat = Models.categoryOf(path);
            s.currentCategory = cat;
            if (kind == 0) {
                c[m.accViews + cat] += 1;
                if (s.lastPageViewMs != VisitorState.NONE) {
                    c[m.accDwell + s.lastPageCategory] += Math.min(Math.max(0, t - s.lastPageViewMs) / 1000f,
                            Models.MAX_DWELL_SECS);
                }
                s.lastPageViewMs = t;
                s.lastPageCategory = cat;
                if (cat == Models.CATEGORIES.length) {
                    String segment = firstSegment(path);
                    c[m.accPaths + (segment == null ? m.pathSegment.length : Models.indexOf(m.pathSegment, segment))] += 1;
                }
                int h = path.hashCode();
                if (s.distinctPages.length < VisitorState.MAX_DISTINCT_PAGES
                        && Arrays.stream(s.distinctPages).noneMatch(x -> x == h)) {
                    s.distinctPages = append(s.distinctPages, h, VisitorState.MAX_DISTINCT_PAGES);
                }
            }
        }
        int sc = m.accScalars;
        c[sc + Models.S_SINCE_LAST] = previousEventMs == VisitorState.NONE ? 0f : Math.max(0, t - previousEventMs) / 1000f;
        JsonNode form = event.path("form");
        if (form.isObject()) {
            String action = form.path("action").asText();
            if (action.equals("started")) {
                c[m.accForms + Models.indexOf(m.formId, form.path("form_id").asText())] += 1;
                c[sc + Models.S_STARTED] += 1;
            } else if (action.equals("submitted")) {
                c[sc + Models.S_SUBMITTED] += 1;
            } else if (action.equals("abandoned")) {
                c[sc + Models.S_ABANDONED] += 1;
            }
            if (form.path("fields_completed").isIntegralNumber()) {
                c[sc + Models.S_MAX_FIELDS] = Math.max(c[sc + Models.S_MAX_FIELDS], form.path("fields_completed").floatValue());
            }
        }
        if ("requested".equals(event.path("chat").path("action").asText(null))) c[sc + Models.S_CHAT] += 1;
        JsonNode results = event.path("search").path("results");
        if (results.isIntegralNumber() && results.asLong() == 0) c[sc + Models.S_NO_RESULTS] += 1;
        if (event.path("custom").path("name").isTextual()) {
            c[m.accCustom + Models.indexOf(m.customEvent, event.path("custom").path("name").asText())] += 1;
        }
        JsonNode device = event.path("device");
        if (device.isObject()) {
            if (s.device < 0 && device.path("category").isTextual()) {
                s.device = Arrays.asList(Models.DEVICES).indexOf(device.path("category").asText());
            }
            if (s.browser < 0 && device.path("browser").isTextual()) {
                s.browser = Models.indexOf(m.browser, device.path("browser").asText());
            }
            if (s.os < 0 && device.path("os").isTextual()) s.os = Models.indexOf(m.os, device.path("os").asText());
        }
        if (s.source < 0 && event.path("traffic").path("source").isTextual()) {
            s.source = Models.indexOf(m.trafficSource, event.path("traffic").path("source").asText());
        }
        if (s.referrer < 0 && event.path("page").path("referrer").isTextual()) {
            String host = referrerHost(event.path("page").path("referrer").asText());
            if (host != null) s.referrer = Models.indexOf(m.referrerHost, host);
        }
    }

    /** The outcomes of config/propensity.toml (index as Models.OUTCOMES). */
    private static boolean achieves(int outcome, String kind, String path, JsonNode form) {
        return switch (outcome) {
            case 0 -> kind.equals("page_view") && "/checkout/complete".equals(path);
            case 1 -> "webinar-signup".equals(form.path("form_id").asText(null))
                    && "submitted".equals(form.path("action").asText(null));
            default -> "loan-application".equals(form.path("form_id").asText(null))
                    && "submitted".equals(form.path("action").asText(null));
        };
    }

    static String urlPath(String url) {
        int scheme = url.indexOf("://");
        String rest = url;
        if (scheme >= 0) {
            String afterScheme = url.substring(scheme + 3);
            int slash = afterScheme.indexOf('/');
            rest = slash >= 0 ? afterScheme.substring(slash) : "/";
        }
        int end = rest.length();
        int q = rest.indexOf('?'), h = rest.indexOf('#');
        if (q >= 0) end = Math.min(end, q);
        if (h >= 0) end = Math.min(end, h);
        return rest.substring(0, end);
    }

    private static String firstSegment(String path) {
        int start = 0;
        while (start < path.length() && path.charAt(start) == '/') start++;
        int end = path.indexOf('/', start);
        String segment = path.substring(start, end < 0 ? path.length() : end);
        return segment.isEmpty() ? null : segment;
    }

    private static String referrerHost(String referrer) {
        int scheme = referrer.indexOf("://");
        if (scheme < 0) return null;
        String rest = referrer.substring(scheme + 3);
        int end = rest.length();
        for (char ch : new char[] {'/', ':', '?', '#'}) {
            int k = rest.indexOf(ch);
            if (k >= 0) end = Math.min(end, k);
        }
        String host = rest.substring(0, end);
        int at = host.lastIndexOf('@');
        if (at >= 0) host = host.substring(at + 1);
        if (host.regionMatches(true, 0, "www.", 0, 4)) host = host.substring(4);
        return host.isEmpty() ? null : host;
    }

    private static int[] append(int[] values, int v, int max) {
        int[] out;
        if (values.length >= max) {
            out = Arrays.copyOfRange(values, 1, values.length + 1); // the oldest makes room
        } else {
            out = Arrays.copyOf(values, values.length + 1);
        }
        out[out.length - 1] = v;
        return out;
    }

    private JsonNode parse(String text) {
        if (text == null) return null;
        try {
            JsonNode n = json.readTree(text);
            return n.isObject() ? n : null;
        } catch (IOException e) {
            return null;
        }
    }
}

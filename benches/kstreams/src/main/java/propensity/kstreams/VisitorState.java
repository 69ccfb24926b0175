// One visitor's state in the logged `visitor-state` store: the current
// session (id, clocks, event count, feature accumulators, event ids seen,
// outcomes achieved, last probabilities, offer caps) and the visitor's last
// event and offer times. Its Serde is a compact binary layout (what a
// competent Streams user would pick over JSON for a hot store).
package propensity.kstreams;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import org.apache.kafka.common.serialization.Deserializer;
import org.apache.kafka.common.serialization.Serializer;

final class VisitorState {
    static final int MAX_DISTINCT_PAGES = 64;
    static final int MAX_EVENT_IDS = 256;
    static final long NONE = Long.MIN_VALUE;

    long lastEventMs = NONE;
    long lastOfferMs = NONE;
    // Session.
    String sessionId = "";
    boolean explicitSession;
    long sessionStartMs;
    long sessionLastMs;
    int events;
    int achieved; // bit per outcome
    float[] lastProbability = {Float.NaN, Float.NaN, Float.NaN};
    String currentPath = "";
    String trafficSource = "";
    int offersTotal;
    int[] offersPerMap = new int[Offers.MAPS.length];
    int[] seenEvents = new int[0]; // hashes of the session's event ids, oldest first
    // Feature accumulators.
    float[] counters = new float[0];
    long lastPageViewMs = NONE;
    int lastPageCategory;
    int currentCategory = -1, currentKind = -1, device = -1, browser = -1, os = -1, source = -1, referrer = -1;
    int[] distinctPages = new int[0];

    void newSession(String id, boolean explicit, long t, int accLen) {
        sessionId = id;
        explicitSession = explicit;
        sessionStartMs = t;
        sessionLastMs = t;
        events = 0;
        achieved = 0;
        lastProbability = new float[] {Float.NaN, Float.NaN, Float.NaN};
        currentPath = "";
        trafficSource = "";
        offersTotal = 0;
        offersPerMap = new int[Offers.MAPS.length];
        seenEvents = new int[0];
        counters = new float[accLen];
        lastPageViewMs = NONE;
        lastPageCategory = 0;
        currentCategory = currentKind = device = browser = os = source = referrer = -1;
        distinctPages = new int[0];
    }

    static final class Serde implements org.apache.kafka.common.serialization.Serde<VisitorState> {
        @Override
        public Serializer<VisitorState> serializer() {
            return (topic, s) -> s == null ? null : write(s);
        }

        @Override
        public Deserializer<VisitorState> deserializer() {
            return (topic, bytes) -> bytes == null ? null : read(bytes);
        }
    }

    static byte[] write(VisitorState s) {
        try {
            ByteArrayOutputStream bytes = new ByteArrayOutputStream(256 + s.counters.length * 4 + s.seenEvents.length * 4);
            DataOutputStream o = new DataOutputStream(bytes);
            o.writeLong(s.lastEventMs);
            o.writeLong(s.lastOfferMs);
            o.writeUTF(s.sessionId);
            o.writeBoolean(s.explicitSession);
            o.writeLong(s.sessionStartMs);
            o.writeLong(s.sessionLastMs);
            o.writeInt(s.events);
            o.writeInt(s.achieved);
            floats(o, s.lastProbability);
            o.writeUTF(s.currentPath);
            o.writeUTF(s.trafficSource);
            o.writeInt(s.offersTotal);
            ints(o, s.offersPerMap);
            ints(o, s.seenEvents);
            floats(o, s.counters);
            o.writeLong(s.lastPageViewMs);
            for (int v : new int[] {s.lastPageCategory, s.currentCategory, s.currentKind, s.device, s.browser, s.os,
                    s.source, s.referrer}) {
                o.writeInt(v);
            }
            ints(o, s.distinctPages);
            return bytes.toByteArray();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    static VisitorState read(byte[] data) {
        try {
            DataInputStream in = new DataInputStream(new ByteArrayInputStream(data));
            VisitorState s = new VisitorState();
            s.lastEventMs = in.readLong();
            s.lastOfferMs = in.readLong();
            s.sessionId = in.readUTF();
            s.explicitSession = in.readBoolean();
            s.sessionStartMs = in.readLong();
            s.sessionLastMs = in.readLong();
            s.events = in.readInt();
            s.achieved = in.readInt();
            s.lastProbability = floats(in);
            s.currentPath = in.readUTF();
            s.trafficSource = in.readUTF();
            s.offersTotal = in.readInt();
            s.offersPerMap = ints(in);
            s.seenEvents = ints(in);
            s.counters = floats(in);
            s.lastPageViewMs = in.readLong();
            s.lastPageCategory = in.readInt();
            s.currentCategory = in.readInt();
            s.currentKind = in.readInt();
            s.device = in.readInt();
            s.browser = in.readInt();
            s.os = in.readInt();
            s.source = in.readInt();
            s.referrer = in.readInt();
            s.distinctPages = ints(in);
            return s;
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    private static void floats(DataOutputStream o, float[] v) throws IOException {
        o.writeShort(v.length);
        for (float f : v) o.writeFloat(f);
    }

    private static void ints(DataOutputStream o, int[] v) throws IOException {
        o.writeShort(v.length);
        for (int i : v) o.writeInt(i);
    }

    private static float[] floats(DataInputStream in) throws IOException {
        float[] v = new float[in.readShort()];
        for (int i = 0; i < v.length; i++) v[i] = in.readFloat();
        return v;
    }

    private static int[] ints(DataInputStream in) throws IOException {
        int[] v = new int[in.readShort()];
        for (int i = 0; i < v.length; i++) v[i] = in.readInt();
        return v;
    }
}

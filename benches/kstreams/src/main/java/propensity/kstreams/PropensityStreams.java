// Kafka Streams counterpart of `propensity run`, for benches/kstreams_vs_propensity.py.
//
// Owns the topology and the Streams configuration. The job is the engine's:
// events and consent are co-partitioned and keyed by visitor_id; consent is a
// KTable (latest record per visitor, tombstones erase); each event is joined
// with its visitor's latest consent and handed to VisitorProcessor, which
// keeps the visitor's session and feature accumulators in a logged
// (changelogged) key-value store, scores the outcome models and emits offers.
// Exactly-once v2, commit interval 100 ms, one stream thread per core.
package propensity.kstreams;

import java.nio.file.Path;
import java.util.Properties;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.KStream;
import org.apache.kafka.streams.kstream.KTable;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.state.Stores;

public final class PropensityStreams {
    static final String VISITOR_STORE = "visitor-state";

    /** The consent a processed event was joined with; null when the visitor has no record. */
    record GatedEvent(String event, String consent) {}

    static Topology topology(String eventsTopic, String consentTopic, String offersTopic, Models models,
            Properties config) {
        StreamsBuilder builder = new StreamsBuilder();
        builder.addStateStore(Stores.keyValueStoreBuilder(
                        Stores.persistentKeyValueStore(VISITOR_STORE), Serdes.String(), new VisitorState.Serde())
                .withCachingEnabled()
                .withLoggingEnabled(java.util.Map.of()));
        KTable<String, String> consent = builder.table(
                consentTopic, Consumed.with(Serdes.String(), Serdes.String()), Materialized.as("consent-state"));
        KStream<String, String> events = builder.stream(eventsTopic, Consumed.with(Serdes.String(), Serdes.String()));
        // Left join: an event of a visitor without a consent record reaches the
        // processor with consent == null and is dropped there (opt_in). The join
        // keeps the key, so nothing is repartitioned and GatedEvent needs no serde.
        events.leftJoin(consent, GatedEvent::new)
                .process(() -> new VisitorProcessor(models), VISITOR_STORE)
                .to(offersTopic, Produced.with(Serdes.String(), Serdes.String()));
        return builder.build(config);
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 3) {
            System.err.println("usage: PropensityStreams <brokers> <application.id> <models dir>\n"
                    + "env: EVENTS_TOPIC, CONSENT_TOPIC, OFFERS_TOPIC, STATE_DIR, THREADS");
            System.exit(2);
        }
        String eventsTopic = System.getenv().getOrDefault("EVENTS_TOPIC", "visitor-events");
        String consentTopic = System.getenv().getOrDefault("CONSENT_TOPIC", "visitor-consent");
        String offersTopic = System.getenv().getOrDefault("OFFERS_TOPIC", "engagement-offers");
        int threads = Integer.parseInt(System.getenv().getOrDefault(
                "THREADS", Integer.toString(Runtime.getRuntime().availableProcessors())));
        Models models = Models.load(Path.of(args[2]));

        Properties p = new Properties();
        p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        p.put(StreamsConfig.APPLICATION_ID_CONFIG, args[1]);
        p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
        p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 100);
        p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, threads);
        p.put(StreamsConfig.STATE_DIR_CONFIG, System.getenv().getOrDefault("STATE_DIR", "/tmp/kafka-streams"));
        // Record cache in front of the stores (flushed at each 100 ms commit).
        p.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, 64L * 1024 * 1024);
        p.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");
        p.put(StreamsConfig.consumerPrefix(ConsumerConfig.MAX_POLL_RECORDS_CONFIG), 2000);
        p.put(StreamsConfig.consumerPrefix(ConsumerConfig.FETCH_MIN_BYTES_CONFIG), 1);
        p.put(StreamsConfig.producerPrefix(ProducerConfig.LINGER_MS_CONFIG), 5);
        p.put(StreamsConfig.producerPrefix(ProducerConfig.BATCH_SIZE_CONFIG), 256 * 1024);

        // The consent KTable restores from its (compacted) source topic instead
        // of writing a changelog of its own.
        p.put(StreamsConfig.TOPOLOGY_OPTIMIZATION_CONFIG, StreamsConfig.OPTIMIZE);

        KafkaStreams streams = new KafkaStreams(topology(eventsTopic, consentTopic, offersTopic, models, p), p);
        Runtime.getRuntime().addShutdownHook(new Thread(streams::close));
        streams.setUncaughtExceptionHandler(e -> {
            System.err.println("stream thread failed: " + e);
            return org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse
                    .SHUTDOWN_APPLICATION;
        });
        streams.start();
        System.err.println("propensity-kstreams started: " + threads + " thread(s), " + models.describe());
        Thread.currentThread().join();
    }
}

// Broker-side measurements for benches/kstreams_vs_propensity.py (the
// driver is stdlib Python, so it has no Kafka client of its own):
//   wait-committed BROKERS GROUP TIMEOUT_SECS TOPIC...
//     polls every 50 ms until the group's committed offsets reach the end
//     offsets of every partition of the topics, then prints the epoch ms it
//     saw that (exit 1 on timeout). Committed offsets under exactly-once are
//     the ones committed with the output transaction, so "caught up" means
//     all input processed and its outputs committed.
//   read BROKERS TOPIC
//     prints every record of TOPIC as a read_committed consumer sees it,
//     one `key<TAB>value` line, and exits at the end.
// Same probe for both systems, run as its own process: its CPU is neither's.
package propensity.kstreams;

import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;

public final class KafkaProbe {
    public static void main(String[] args) throws Exception {
        if (args.length >= 4 && args[0].equals("wait-committed")) {
            System.exit(waitCommitted(args[1], args[2], Long.parseLong(args[3]),
                    List.of(args).subList(4, args.length)));
        } else if (args.length == 3 && args[0].equals("read")) {
            read(args[1], args[2]);
        } else {
            System.err.println("usage: KafkaProbe wait-committed BROKERS GROUP TIMEOUT_SECS TOPIC... | read BROKERS TOPIC");
            System.exit(2);
        }
    }

    private static int waitCommitted(String brokers, String group, long timeoutSecs, List<String> topics)
            throws Exception {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, brokers);
        try (Admin admin = Admin.create(p)) {
            Map<TopicPartition, OffsetSpec> latest = new HashMap<>();
            admin.describeTopics(topics).allTopicNames().get().forEach((name, d) -> d.partitions()
                    .forEach(part -> latest.put(new TopicPartition(name, part.partition()), OffsetSpec.latest())));
            Map<TopicPartition, Long> end = new HashMap<>();
            admin.listOffsets(latest).all().get().forEach((tp, info) -> end.put(tp, info.offset()));
            long deadline = System.currentTimeMillis() + timeoutSecs * 1000;
            while (System.currentTimeMillis() < deadline) {
                Map<TopicPartition, OffsetAndMetadata> committed =
                        admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get();
                boolean done = end.entrySet().stream().allMatch(e -> e.getValue() == 0
                        || (committed.get(e.getKey()) != null && committed.get(e.getKey()).offset() >= e.getValue()));
                if (done) {
                    System.out.println(System.currentTimeMillis());
                    return 0;
                }
                Thread.sleep(50);
            }
            System.err.println("timed out waiting for group " + group);
            return 1;
        }
    }

    private static void read(String brokers, String topic) {
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, brokers);
        p.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
        try (KafkaConsumer<String, String> c =
                new KafkaConsumer<>(p, new StringDeserializer(), new StringDeserializer())) {
            List<TopicPartition> parts = new ArrayList<>();
            c.partitionsFor(topic).forEach(i -> parts.add(new TopicPartition(topic, i.partition())));
            c.assign(parts);
            c.seekToBeginning(parts);
            Map<TopicPartition, Long> end = c.endOffsets(parts); // the last stable offsets under read_committed
            StringBuilder out = new StringBuilder();
            while (parts.stream().anyMatch(tp -> c.position(tp) < end.get(tp))) {
                for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(200))) {
                    out.append(r.key()).append('\t').append(r.value()).append('\n');
                }
            }
            System.out.print(out);
        }
    }
}

// Reads an AI Hub event topic from the beginning with Kafka's own Java client, the reference
// implementation every integration is built on, and prints one JSON line per message: partition,
// offset, key, headers and the event. tests/tests/topic_contract.rs runs it with Java's
// single-file launcher on the classpath of infra/kafka/pom.xml.
//
//   java -cp <classpath> ReadTopic.java BROKERS TOPIC COUNT TIMEOUT_SECONDS [CLIENT_PROPERTIES]
//
// CLIENT_PROPERTIES, a file of the client's security settings (security.protocol, SASL, trust
// store), is given when the broker is reached over TLS or SASL.

import java.io.FileReader;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.UUID;

import com.fasterxml.jackson.databind.ObjectMapper;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.StringDeserializer;

public class ReadTopic {
    public static void main(String[] args) throws Exception {
        String brokers = args[0];
        String topic = args[1];
        int wanted = Integer.parseInt(args[2]);
        long deadline = System.currentTimeMillis() + 1000L * Long.parseLong(args[3]);

        Properties props = new Properties();
        if (args.length > 4) {
            try (FileReader security = new FileReader(args[4], StandardCharsets.UTF_8)) {
                props.load(security);
            }
        }
        props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, brokers);
        props.put(ConsumerConfig.GROUP_ID_CONFIG, "java-reader-" + UUID.randomUUID());
        props.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        props.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        props.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());

        ObjectMapper json = new ObjectMapper();
        int seen = 0;
        try (KafkaConsumer<String, byte[]> consumer = new KafkaConsumer<>(props)) {
            consumer.subscribe(List.of(topic));
            while (seen < wanted && System.currentTimeMillis() < deadline) {
                for (ConsumerRecord<String, byte[]> record : consumer.poll(Duration.ofMillis(200))) {
                    Map<String, String> headers = new LinkedHashMap<>();
                    for (Header header : record.headers()) {
                        headers.put(header.key(), new String(header.value(), StandardCharsets.UTF_8));
                    }
                    Map<String, Object> line = new LinkedHashMap<>();
                    line.put("partition", record.partition());
                    line.put("offset", record.offset());
                    line.put("key", record.key());
                    line.put("timestamp", record.timestamp());
                    line.put("headers", headers);
                    line.put("event", json.readTree(record.value()));
                    System.out.println(json.writeValueAsString(line));
                    seen++;
                }
            }
        }
        if (seen < wanted) {
            System.err.println("read " + seen + " of " + wanted + " messages before the deadline");
            System.exit(1);
        }
    }
}

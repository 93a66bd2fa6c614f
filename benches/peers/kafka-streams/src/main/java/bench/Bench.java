package bench;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.time.Duration;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.KStream;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.Suppressed;
import org.apache.kafka.streams.kstream.TimeWindows;
import org.apache.kafka.streams.processor.StateRestoreListener;

/**
 * The benchmark's workloads in Kafka Streams.
 *
 * <p>A: {@code groupByKey().count().toStream().to()}, emitting {"url", "count"}. B: tumbling
 * 10 s windows with no grace, {@code suppress(untilWindowCloses)}, emitting {"start", "end",
 * "value"} keyed by URL. Values are parsed as JSON, like every other system in the run does.
 *
 * <p>Arguments: bootstrap workload(a|b) guarantee(alo|eos) input output application-id state-dir
 * [nocache]. With {@code nocache} the record cache is off ({@code statestore.cache.max.bytes=0}):
 * workload A then emits one record per input, like a per-event emit.
 *
 * <p>For the benchmark's recovery measure it prints {@code bench: restore-start}, {@code bench:
 * restore-end <records>} for each restored store partition and {@code bench: state RUNNING} when
 * every thread is running, each flushed at once.
 */
public final class Bench {
  private static final ObjectMapper JSON = new ObjectMapper();

  public static void main(String[] args) throws Exception {
    if (args.length != 7 && !(args.length == 8 && args[7].equals("nocache"))) {
      System.err.println("usage: Bench bootstrap a|b alo|eos input output app-id state-dir [nocache]");
      System.exit(2);
    }
    String bootstrap = args[0], workload = args[1], guarantee = args[2];
    String input = args[3], output = args[4], appId = args[5], stateDir = args[6];

    Properties p = new Properties();
    p.put(StreamsConfig.APPLICATION_ID_CONFIG, appId);
    p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    p.put(StreamsConfig.STATE_DIR_CONFIG, stateDir);
    p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, 2);
    p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 100);
    p.put(StreamsConfig.REPLICATION_FACTOR_CONFIG, 1);
    p.put(
        StreamsConfig.PROCESSING_GUARANTEE_CONFIG,
        guarantee.equals("eos") ? StreamsConfig.EXACTLY_ONCE_V2 : StreamsConfig.AT_LEAST_ONCE);
    p.put(StreamsConfig.consumerPrefix("auto.offset.reset"), "earliest");
    if (args.length == 8) {
      p.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, 0L);
    }

    StreamsBuilder builder = new StreamsBuilder();
    KStream<String, String> urls =
        builder.stream(input, Consumed.with(Serdes.String(), Serdes.String()))
            .mapValues(Bench::url);
    if (workload.equals("a")) {
      urls.groupByKey(Grouped.with(Serdes.String(), Serdes.String()))
          .count(Materialized.as("counts"))
          .toStream()
          .map((url, n) -> KeyValue.pair(url, "{\"url\":" + quote(url) + ",\"count\":" + n + "}"))
          .to(output, Produced.with(Serdes.String(), Serdes.String()));
    } else {
      urls.groupByKey(Grouped.with(Serdes.String(), Serdes.String()))
          .windowedBy(TimeWindows.ofSizeWithNoGrace(Duration.ofSeconds(10)))
          .count(Materialized.as("window-counts"))
          .suppress(Suppressed.untilWindowCloses(Suppressed.BufferConfig.unbounded()))
          .toStream()
          .map(
              (w, n) ->
                  KeyValue.pair(
                      w.key(),
                      "{\"start\":" + w.window().start() + ",\"end\":" + w.window().end()
                          + ",\"value\":" + n + "}"))
          .to(output, Produced.with(Serdes.String(), Serdes.String()));
    }

    KafkaStreams streams = new KafkaStreams(builder.build(), p);
    AtomicLong restored = new AtomicLong();
    streams.setGlobalStateRestoreListener(
        new StateRestoreListener() {
          @Override
          public void onRestoreStart(TopicPartition tp, String store, long start, long end) {
            say("restore-start " + tp);
          }

          @Override
          public void onBatchRestored(TopicPartition tp, String store, long end, long n) {}

          @Override
          public void onRestoreEnd(TopicPartition tp, String store, long total) {
            say("restore-end " + total + " " + tp + " (" + restored.addAndGet(total) + " in all)");
          }
        });
    streams.setStateListener((now, before) -> say("state " + now));
    CountDownLatch done = new CountDownLatch(1);
    Runtime.getRuntime()
        .addShutdownHook(
            new Thread(
                () -> {
                  streams.close(Duration.ofSeconds(10));
                  done.countDown();
                }));
    streams.start();
    done.await();
  }

  private static synchronized void say(String line) {
    System.out.println("bench: " + line);
    System.out.flush();
  }

  private static String url(String value) {
    try {
      JsonNode view = JSON.readTree(value);
      return view.get("url").asText();
    } catch (Exception e) {
      throw new IllegalArgumentException("not a page view: " + value, e);
    }
  }

  private static String quote(String s) {
    try {
      return JSON.writeValueAsString(s);
    } catch (Exception e) {
      throw new IllegalStateException(e);
    }
  }
}

import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

import org.opensearch.common.logging.LogConfigurator;
import org.opensearch.common.settings.Settings;
import org.opensearch.env.Environment;
import org.opensearch.node.InternalSettingsPreparer;
import org.opensearch.node.Node;
import org.opensearch.transport.Netty4Plugin;

/**
 * A single OpenSearch node for the sandbox and the real-server tests, run from the
 * Maven jars without the distribution: the distribution's bootstrap
 * (org.opensearch.bootstrap.OpenSearch) wants a module folder of plugin
 * descriptors, security policy files and jar-hell checks that Maven's flat lib/
 * does not have. Node's protected constructor takes plugin classes from the
 * classpath instead, which is how OpenSearch's own test clusters start nodes.
 *
 * Usage: java -cp CLASSES:lib/* OpenSearchTestNode HOME
 * HOME/config holds opensearch.yml (every node setting: paths, network.host,
 * ports, discovery.type, path.repo) and log4j2.properties. The node runs until
 * the process gets SIGTERM or SIGINT, then closes cleanly.
 */
public final class OpenSearchTestNode {

    /** Node with the Netty4 plugin: core has no HTTP server or transport of its own. */
    private static final class NodeWithNetty extends Node {
        NodeWithNetty(Environment environment) {
            super(environment, List.of(Netty4Plugin.class), true);
        }
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 1) {
            System.err.println("usage: OpenSearchTestNode HOME (HOME/config/opensearch.yml is read)");
            System.exit(2);
        }
        Path home = Path.of(args[0]).toAbsolutePath();
        // Logging errors before log4j is configured go to stderr, as in the
        // distribution's bootstrap.
        LogConfigurator.registerErrorListener();
        Settings initial = Settings.builder().put("path.home", home.toString()).build();
        Environment environment = InternalSettingsPreparer.prepareEnvironment(
            initial, Map.of(), home.resolve("config"), () -> "opensearch-test-node");
        LogConfigurator.setNodeName(Node.NODE_NAME_SETTING.get(environment.settings()));
        LogConfigurator.configure(environment);

        Node node = new NodeWithNetty(environment);
        // OpenSearch's threads are daemons: main waits on this latch, released once
        // the shutdown hook has closed the node (flushing its shards).
        CountDownLatch closed = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                node.close();
                node.awaitClose(30, TimeUnit.SECONDS);
            } catch (Exception e) {
                System.err.println("closing the OpenSearch node failed: " + e);
            } finally {
                closed.countDown();
            }
        }, "opensearch-test-node-shutdown"));
        node.start();
        closed.await();
    }
}

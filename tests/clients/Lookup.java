// The JVM's resolvers, run as a single-file program (`java Lookup.java ...`):
//
//   host NAME   InetAddress.getAllByName (the JDK calls getaddrinfo): each address, one a line
//   srv NAME    JNDI's DNS provider (its own resolver, reading resolv.conf's nameservers):
//               "PRIORITY WEIGHT PORT TARGET" lines
//
// Exit status 0 found, 2 the name does not exist, 1 any other failure (message on stderr).
// The JVM caches lookups in the process; each run is a new process, and the tests also set
// sun.net.inetaddr.ttl=0 and sun.net.inetaddr.negative.ttl=0 so that nothing is cached.
import java.net.InetAddress;
import java.net.UnknownHostException;
import java.util.Hashtable;
import javax.naming.NameNotFoundException;
import javax.naming.NamingEnumeration;
import javax.naming.directory.Attribute;
import javax.naming.directory.InitialDirContext;

public class Lookup {
    public static void main(String[] args) throws Exception {
        if (args.length != 2) {
            System.err.println("usage: Lookup host|srv NAME");
            System.exit(1);
        }
        try {
            if (args[0].equals("host")) {
                for (InetAddress a : InetAddress.getAllByName(args[1])) {
                    System.out.println(a.getHostAddress());
                }
            } else if (args[0].equals("srv")) {
                Hashtable<String, String> env = new Hashtable<>();
                env.put("java.naming.factory.initial", "com.sun.jndi.dns.DnsContextFactory");
                env.put("java.naming.provider.url", "dns:");
                Attribute srv = new InitialDirContext(env)
                        .getAttributes(args[1], new String[] {"SRV"})
                        .get("SRV");
                if (srv == null) {
                    System.err.println(args[1] + ": no SRV records");
                    System.exit(2);
                }
                NamingEnumeration<?> all = srv.getAll();
                while (all.hasMore()) {
                    System.out.println(all.next());
                }
            } else {
                System.err.println("unknown lookup " + args[0]);
                System.exit(1);
            }
        } catch (UnknownHostException | NameNotFoundException e) {
            System.err.println(e);
            System.exit(2);
        }
    }
}

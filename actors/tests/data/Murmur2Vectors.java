import org.apache.kafka.common.utils.Utils;
import java.nio.charset.StandardCharsets;
import java.util.Random;
public class Murmur2Vectors {
  public static void main(String[] a) {
    String[] fixed = {"", "a", "ab", "abc", "abcd", "21", "foobar", "a-little-bit-long-string", "a-little-bit-longer-string", "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", "customer-42", "kafka", "\u00e9t\u00e9 \u2603"};
    for (String s : fixed) {
      byte[] b = s.getBytes(StandardCharsets.UTF_8);
      int h = Utils.murmur2(b);
      System.out.println(hex(b) + "\t" + h + "\t" + (Utils.toPositive(h) % 6) + "\t" + (Utils.toPositive(h) % 97));
    }
    Random r = new Random(17);
    for (int i = 0; i < 64; i++) {
      byte[] b = new byte[r.nextInt(40)];
      r.nextBytes(b);
      int h = Utils.murmur2(b);
      System.out.println(hex(b) + "\t" + h + "\t" + (Utils.toPositive(h) % 6) + "\t" + (Utils.toPositive(h) % 97));
    }
  }
  static String hex(byte[] b) { StringBuilder sb = new StringBuilder(); for (byte x : b) sb.append(String.format("%02x", x)); return sb.length()==0 ? "-" : sb.toString(); }
}

// The action maps of the shipped config/propensity.toml (mirrored here), in
// the engine's order: priority descending, then name. The first map that
// fires, holds its conditions, has its purpose granted and is not capped
// makes the event's offer.
package propensity.kstreams;

final class Offers {
    static final int MAX_PER_SESSION = 3;
    static final long MIN_GAP_MS = 10_000;

    /** trigger: atOrAbove (fires while p >= threshold) or falls (from above to at or below). */
    record ActionMap(String name, int outcome, boolean atOrAbove, double threshold, String purpose, int minEvents,
            String urlPrefix, String actionJson) {
        boolean fires(double p, float previous) {
            return atOrAbove ? p >= threshold : !Float.isNaN(previous) && previous > threshold && p <= threshold;
        }
    }

    static final ActionMap[] MAPS = {
        new ActionMap("checkout-assist-chat", 0, true, 0.5, "sales", 3, "/c",
                "{\"type\":\"chat\",\"queue\":\"sales-checkout\"}"),
        new ActionMap("cart-rescue-offer", 0, false, 0.15, "marketing", 5, null,
                "{\"type\":\"content_offer\",\"content_id\":\"free-shipping-voucher\"}"),
        new ActionMap("loan-advisor-callback", 2, true, 0.4, "sales", 3, null,
                "{\"type\":\"callback\",\"queue\":\"loan-advisors\"}"),
        new ActionMap("webinar-agenda-offer", 1, true, 0.35, "marketing", 0, null,
                "{\"type\":\"content_offer\",\"content_id\":\"webinar-agenda\"}"),
    };

    private Offers() {}
}

// quotameter console: what plain pages cannot do alone. No framework, no build step.

// --- actions and banner -------------------------------------------------------------------
// The organization page's banner (#live-banner) says which features are blocked. It listens
// to the page's live stream (its data-live URL, server-sent events) and, with no reload:
// - `state` (on every (re)connection): hides the lines of features that have access again;
// - `access.blocked`: adds the feature's line (from the notice's numbers);
// - `access.restored`: removes it.
// The banner is hidden while no line is left. Each feature card (#feature-{name}) may hold
// an element with a data-access attribute: it is set to "blocked" or "open", and its text to
// the element's data-blocked-text / data-open-text (default "Blocked" / "Has access").
(function () {
  "use strict";

  var SHORT = { hour: "h", second: "s" };
  var numbers = new Intl.NumberFormat("en-US", { maximumFractionDigits: 2 });

  function amount(value) {
    var n = Number(value);
    return isFinite(n) ? numbers.format(n) : String(value);
  }

  function quantity(value, unit) {
    if (value === null || value === undefined) return "no limit";
    if (SHORT[unit]) return amount(value) + " " + SHORT[unit];
    return amount(value) + " " + (Number(value) === 1 ? unit : unit + "s");
  }

  function lineText(feature, details) {
    var used = "";
    if (details && details.usage !== undefined && details.limit !== undefined) {
      used = ": " + amount(details.usage) + " of " + quantity(details.limit, details.unit) + " used";
    }
    return feature + " is blocked" + used +
      ". Members cannot use it until a top-up or the next period.";
  }

  function cardAccess(feature, open) {
    var card = document.getElementById("feature-" + feature);
    if (!card) return;
    var marks = card.querySelectorAll("[data-access]");
    for (var i = 0; i < marks.length; i++) {
      var mark = marks[i];
      mark.setAttribute("data-access", open ? "open" : "blocked");
      mark.textContent = open
        ? mark.getAttribute("data-open-text") || "Has access"
        : mark.getAttribute("data-blocked-text") || "Blocked";
    }
  }

  function start(banner) {
    var list = banner.querySelector(".banner-lines");
    if (!list) {
      list = document.createElement("ul");
      list.className = "banner-lines";
      banner.appendChild(list);
    }

    function lineOf(feature) {
      var items = list.querySelectorAll("li[data-feature]");
      for (var i = 0; i < items.length; i++) {
        if (items[i].getAttribute("data-feature") === feature) return items[i];
      }
      return null;
    }

    function refresh() {
      banner.hidden = list.querySelector("li[data-feature]") === null;
    }

    function blocked(feature, details) {
      var line = lineOf(feature);
      if (!line) {
        line = document.createElement("li");
        line.setAttribute("data-feature", feature);
        list.appendChild(line);
      }
      if (details || !line.textContent) line.textContent = lineText(feature, details);
      cardAccess(feature, false);
      refresh();
    }

    function restored(feature) {
      var line = lineOf(feature);
      if (line) line.parentNode.removeChild(line);
      cardAccess(feature, true);
      refresh();
    }

    function read(event) {
      try {
        return JSON.parse(event.data);
      } catch (err) {
        return null;
      }
    }

    var source = new EventSource(banner.getAttribute("data-live"));
    source.addEventListener("state", function (event) {
      var state = read(event);
      if (!state || !state.features) return;
      Object.keys(state.features).forEach(function (feature) {
        if (state.features[feature].has_access) restored(feature);
        else if (!lineOf(feature)) blocked(feature, null);
        else cardAccess(feature, false);
      });
    });
    source.addEventListener("access.blocked", function (event) {
      var notice = read(event);
      if (notice && notice.feature) blocked(notice.feature, notice.details);
    });
    source.addEventListener("access.restored", function (event) {
      var notice = read(event);
      if (notice && notice.feature) restored(notice.feature);
    });
    window.addEventListener("pagehide", function () { source.close(); });
    banner.setAttribute("data-listening", "true");
  }

  function ready() {
    var banner = document.getElementById("live-banner");
    if (banner && banner.getAttribute("data-live") && window.EventSource) start(banner);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", ready);
  else ready();
})();

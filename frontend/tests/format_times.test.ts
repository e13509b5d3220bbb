// @vitest-environment happy-dom
import { describe, expect, it } from "vitest";
import { formatDuration, formatTimes, formatWhen } from "../src/lib/format";

describe("formatTimes", () => {
  it("writes server-rendered times as the scripts write dates", () => {
    document.body.innerHTML =
      '<p>Started <time class="when" datetime="2026-12-06T12:43:00+00:00">2026-12-06 12:43</time>' +
      ' <time class="when" datetime="not a date">kept</time>' +
      ' <time datetime="2026-12-06T12:43:00+00:00">other</time></p>';
    formatTimes(document);
    const times = document.querySelectorAll("time");
    expect(times[0]!.textContent).toBe(formatWhen("2026-12-06T12:43:00+00:00"));
    expect(times[0]!.textContent).not.toBe("2026-12-06 12:43");
    expect(times[1]!.textContent).toBe("kept"); // an unreadable value keeps the server's text
    expect(times[2]!.textContent).toBe("other"); // only class "when" is rewritten
  });
});

describe("formatDuration", () => {
  it("reads as a clock: whole seconds cut down, then minutes and hours", () => {
    expect(formatDuration(0)).toBe("0 s");
    expect(formatDuration(42.9)).toBe("42 s");
    expect(formatDuration(120)).toBe("2 min 00 s");
    expect(formatDuration(185)).toBe("3 min 05 s");
    expect(formatDuration(3900)).toBe("1 h 05 min");
    expect(formatDuration(-5)).toBe("0 s");
  });
});

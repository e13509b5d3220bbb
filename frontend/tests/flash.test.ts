// @vitest-environment happy-dom
import { beforeEach, describe, expect, it } from "vitest";
import { flashNext, showFlash } from "../src/lib/flash";

describe("flash messages", () => {
  beforeEach(() => sessionStorage.clear());

  it("shows a message kept by the page before, once, above main", () => {
    document.body.innerHTML = "<header></header><main><h1>Campaign</h1></main>";
    flashNext("v2 was already open");
    expect(showFlash(document)).toBe("v2 was already open");
    const item = document.querySelector("ul.messages + main")?.previousElementSibling;
    expect(item?.textContent).toBe("v2 was already open ×");
    expect(document.querySelector("li.flash")?.getAttribute("role")).toBe("status");
    expect(showFlash(document)).toBe(""); // shown once
    expect(document.querySelectorAll("li.flash")).toHaveLength(1);
    document.querySelector<HTMLButtonElement>("li.flash button")!.click(); // dismissed
    expect(document.querySelectorAll("li.flash")).toHaveLength(0);
  });

  it("joins the server's messages when the page has some", () => {
    document.body.innerHTML =
      '<ul class="messages"><li class="message">Saved.</li></ul><main></main>';
    flashNext("Opened.");
    showFlash(document);
    expect([...document.querySelectorAll("ul.messages li")].map((li) => li.textContent)).toEqual([
      "Saved.",
      "Opened. ×",
    ]);
  });

  it("does nothing without a message", () => {
    document.body.innerHTML = "<main></main>";
    expect(showFlash(document)).toBe("");
    expect(document.querySelector("ul.messages")).toBeNull();
  });

  it("is only lost where the browser refuses storage", () => {
    const refusing = {
      getItem: () => {
        throw new Error("SecurityError");
      },
      setItem: () => {
        throw new Error("SecurityError");
      },
    } as unknown as Storage;
    document.body.innerHTML = "<main></main>";
    expect(() => flashNext("x", refusing)).not.toThrow();
    expect(showFlash(document, refusing)).toBe("");
  });
});

// The terminal's library adds <style> elements for its layout and colours.
// The page's Content-Security-Policy admits only stylesheets from this
// origin and style elements carrying this response's nonce (which the
// server puts in a meta tag of the page): every style element the page's
// own code creates gets it. Imported first, before anything makes one.
const nonce = document.querySelector('meta[name="paddock-style-nonce"]')?.getAttribute("content") ?? "";
const make = Document.prototype.createElement;
Document.prototype.createElement = function (this: Document, tag: string, options?: ElementCreationOptions) {
  const el = make.call(this, tag, options);
  if (nonce && tag.toLowerCase() === "style") (el as HTMLStyleElement).nonce = nonce;
  return el;
} as typeof Document.prototype.createElement;

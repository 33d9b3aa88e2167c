// uidcast.mjs -- uidcast.js as an ES module: import { Uidcast } from "/uidcast.mjs". The
// client itself is uidcast.js, one file that also loads as a plain <script>.
import "./uidcast.js";

export const Uidcast = globalThis.Uidcast;
export default Uidcast;

// Token files (safetensors) summarised in the browser: the JSON header says each tensor's dtype, shape and byte
// range, and "__metadata__" what made it (model, token rate...). Integer codes of image tokens become a small
// picture: one pixel a token, coloured by its code.

const INTS = { I64: BigInt64Array, I32: Int32Array, I16: Int16Array, I8: Int8Array, U8: Uint8Array,
  U16: Uint16Array, U32: Uint32Array, U64: BigUint64Array };

/** {tensors: [{name, dtype, shape, offsets}], metadata, dataStart} from a safetensors file's bytes. */
export function parseSafetensors(buffer) {
  const view = new DataView(buffer);
  const headerLength = Number(view.getBigUint64(0, true));
  if (8 + headerLength > buffer.byteLength) throw new Error("not a safetensors file (header past the end)");
  const header = JSON.parse(new TextDecoder().decode(new Uint8Array(buffer, 8, headerLength)));
  const { __metadata__: metadata = {}, ...rest } = header;
  const tensors = Object.entries(rest).map(([name, t]) => ({ name, dtype: t.dtype, shape: t.shape,
    offsets: t.data_offsets }));
  return { tensors, metadata, dataStart: 8 + headerLength };
}

/** An integer tensor's values as Numbers (null for float tensors). */
export function tensorValues(buffer, file, tensor) {
  const Type = INTS[tensor.dtype];
  if (!Type) return null;
  const [start, end] = tensor.offsets;
  const bytes = buffer.slice(file.dataStart + start, file.dataStart + end);  // a copy: aligned for the view
  return Array.from(new Type(bytes), Number);
}

/** The (height, width) a tensor's codes are drawn as: its last two axes, or a near-square of a flat sequence. */
export function gridOf(shape, count) {
  const dims = shape.filter((d) => d > 1);
  if (dims.length >= 2) {
    const [height, width] = dims.slice(-2);
    return [height, width];
  }
  const width = Math.ceil(Math.sqrt(count));
  return [Math.ceil(count / width), width];
}

/** A canvas with one pixel a code of the first (height x width) plane, hue by code value. */
export function tokenMap(values, shape) {
  const [height, width] = gridOf(shape, values.length);
  const canvas = document.createElement("canvas");
  canvas.width = width;
  canvas.height = height;
  canvas.className = "token-map";
  const context = canvas.getContext("2d");
  const image = context.createImageData(width, height);
  const top = Math.max(1, ...values.slice(0, width * height));
  for (let i = 0; i < Math.min(values.length, width * height); i += 1) {
    const hue = (values[i] / top) * 300;
    const [r, g, b] = hsl(hue, 0.65, 0.5);
    image.data.set([r, g, b, 255], i * 4);
  }
  context.putImageData(image, 0, 0);
  return canvas;
}

function hsl(hue, saturation, lightness) {
  const f = (n) => {
    const k = (n + hue / 30) % 12;
    const a = saturation * Math.min(lightness, 1 - lightness);
    return Math.round(255 * (lightness - a * Math.max(-1, Math.min(k - 3, 9 - k, 1))));
  };
  return [f(0), f(8), f(4)];
}

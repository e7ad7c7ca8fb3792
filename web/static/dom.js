// DOM building without HTML strings: every text goes in as a text node or
// an attribute value, so user input (experiment names, hypotheses, API
// error messages) can never become markup. Nothing here uses innerHTML.

const SVG_NS = 'http://www.w3.org/2000/svg';

function build(el, attrs, children) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === 'on') {
      for (const [type, fn] of Object.entries(value)) el.addEventListener(type, fn);
    } else if (name === 'style' || name.startsWith('on')) {
      throw new Error('dom: ' + name + ' attributes are not allowed (the CSP forbids inline code and style)');
    } else if (name === 'dataset') {
      Object.assign(el.dataset, value);
    } else if (name === 'value' && 'value' in el && !(el instanceof SVGElement)) {
      el.value = value;
    } else if (name === 'checked' || name === 'selected' || name === 'disabled' || name === 'hidden' || name === 'readOnly' || name === 'multiple') {
      el[name] = !!value;
    } else {
      el.setAttribute(name, value === true ? '' : String(value));
    }
  }
  append(el, children);
  return el;
}

// append adds children: strings and numbers as text, nodes as they are,
// arrays flattened; null, undefined and false are skipped.
export function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
  return el;
}

// h makes an HTML element: h('a', {href: '#/x', class: 'btn'}, 'text', child).
export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

// s makes an SVG element.
export function s(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

// replace empties el and puts children in it.
export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

let ids = 0;
// uid returns a fresh id for label/aria references.
export function uid(prefix) {
  ids += 1;
  return (prefix || 'id') + '-' + ids;
}

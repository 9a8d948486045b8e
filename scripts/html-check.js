// Appended (in a <script>) to a copy of a heap timeline page by scripts/html-screenshot.sh:
// uses the table of sites as a reader would (sort buttons, search box, a row's stack) and
// writes one `check: ok` or `check: FAIL why` line per check into a pre element (id
// browser-check), then `done`. Needs at least two sites whose growth, allocation rate and live bytes orders
// differ, and a site named `leak_session_state` (the leaky_service example's leak).
(function () {
  var lines = [];
  function check(name, ok, why) {
    lines.push(name + ': ' + (ok ? 'ok' : 'FAIL ' + (why || '')));
  }
  function rows() {
    return Array.prototype.slice.call(document.querySelectorAll('#sites tbody tr'));
  }
  function shown() {
    return rows().filter(function (r) { return !r.hidden; });
  }
  function values(key) {
    return rows().map(function (r) { return parseFloat(r.getAttribute('data-' + key)); });
  }
  function ordered(xs, sign) {
    for (var i = 1; i < xs.length; i++) {
      if (sign * (xs[i] - xs[i - 1]) < 0) return false;
    }
    return true;
  }
  function names() {
    return rows().map(function (r) { return r.querySelector('summary').textContent; }).join('|');
  }
  try {
    var total = rows().length;
    check('rows', total >= 2, total + ' rows');
    var before = names();
    var changed = false;
    ['growth', 'rate', 'live'].forEach(function (key) {
      var button = document.querySelector('#sites th button[data-key="' + key + '"]');
      button.click();
      check('sort by ' + key + ', largest first', ordered(values(key), -1), values(key).join(' '));
      changed = changed || names() !== before;
      button.click();
      check('sort by ' + key + ', smallest first', ordered(values(key), 1), values(key).join(' '));
    });
    check('sorting moved rows', changed, 'the same order after every sort');
    check('every row kept', rows().length === total, rows().length + ' of ' + total);

    var search = document.getElementById('site-search');
    var count = document.getElementById('site-count');
    search.value = 'LEAK_SESSION';
    search.dispatchEvent(new Event('input', { bubbles: true }));
    var hits = shown();
    var all = hits.every(function (r) { return /leak_session/i.test(r.textContent); });
    check('search keeps the matching rows', hits.length >= 1 && hits.length < total && all,
      hits.length + ' of ' + total + ' shown');
    check('search count', count.textContent === hits.length + ' of ' + total + ' sites',
      count.textContent);
    search.value = 'no-such-function-anywhere';
    search.dispatchEvent(new Event('input', { bubbles: true }));
    check('search with no match hides every row', shown().length === 0, shown().length + ' shown');
    search.value = '';
    search.dispatchEvent(new Event('input', { bubbles: true }));
    check('an empty search shows every row', shown().length === total, shown().length + ' shown');

    var row = document.querySelector('#sites tbody tr[data-suspect]');
    var stack = row && row.querySelector('ol.stack');
    // A closed <details> keeps its content laid out but not rendered: checkVisibility().
    var before = stack ? stack.checkVisibility() : null;
    if (row) row.querySelector('summary').click();
    var after = stack ? stack.checkVisibility() : null;
    var frames = stack ? stack.querySelectorAll('li').length : 0;
    check('a row opens its stack', before === false && after === true && frames >= 2,
      'visible ' + before + ' -> ' + after + ', ' + frames + ' frames');
    check('the stack is symbolized', stack && /leak_session_state/.test(stack.textContent),
      stack ? stack.textContent.slice(0, 80) : 'no stack');

    var frames3 = document.querySelectorAll('iframe.flame');
    var drawn = Array.prototype.every.call(frames3, function (f) {
      return f.getBoundingClientRect().height > 100;
    });
    check('three flamegraphs drawn', frames3.length === 3 && drawn, frames3.length + ' frames');
    lines.push('done');
  } catch (e) {
    lines.push('script: FAIL ' + e);
  }
  var pre = document.createElement('pre');
  pre.id = 'browser-check';
  pre.textContent = lines.join('\n');
  document.body.appendChild(pre);
})();

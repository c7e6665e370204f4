// The chat page: join, then a long-poll loop on chat.php?action=wait. Each answer ends that poll
// and the loop asks again at once with the newest sequence number it has, so events that happen
// between two polls come in the next answer (the server keeps a short log). No framework.
'use strict';
(() => {
  const $ = (id) => document.getElementById(id);
  const HISTORY = 30;       // events of the past shown on joining
  let me = null;            // {nick, key} while joined
  let cursor = 0;           // every event up to here has come through a poll
  let membersSeq = -1;      // the member list shown is as of this event
  const shown = new Set();  // seqs on screen (a POST's answer and a poll may both carry one)

  function randomKey() {
    // Proves to the server that later requests come from whoever joined with the nick.
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  }

  function setStatus(text) { $('status').textContent = text; }
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  function showEvent(event) {
    if (shown.has(event.seq)) return;
    shown.add(event.seq);
    const line = document.createElement('div');
    line.className = event.type;
    line.dataset.seq = event.seq;
    if (event.type === 'message') {
      const nick = document.createElement('span');
      nick.className = 'nick';
      nick.textContent = event.nick + ': ';
      line.append(nick, event.text);
    } else if (event.type === 'join') {
      line.textContent = event.nick + ' joined';
    } else if (event.type === 'leave') {
      line.textContent = event.nick + ' left' + (event.reason && event.reason !== 'left' ? ' (' + event.reason + ')' : '');
    }
    // In sequence order, whichever answer brought it first.
    const box = $('messages');
    const later = Array.from(box.children).find((el) => Number(el.dataset.seq) > event.seq);
    box.insertBefore(line, later || null);
    if (!later) box.scrollTop = box.scrollHeight;
  }

  function showMembers(nicks) {
    $('members').replaceChildren(...nicks.map((nick) => {
      const item = document.createElement('li');
      item.textContent = nick;
      return item;
    }));
  }

  // Every answer of chat.php has the same shape: {seq, members, events}.
  function apply(body) {
    for (const event of body.events || []) {
      showEvent(event);
      if (me && event.type === 'leave' && event.nick === me.nick && event.seq > me.joinedAt) left('you left the chat');
    }
    if (Array.isArray(body.members) && body.seq >= membersSeq) {
      membersSeq = body.seq;
      showMembers(body.members);
    }
  }

  async function post(action, fields) {
    const response = await fetch('chat.php?action=' + action, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(fields),
    });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(body.error || 'HTTP ' + response.status);
    return body;
  }

  async function pollLoop(session) {
    while (me === session) {
      let response, body;
      try {
        const query = new URLSearchParams({ action: 'wait', nick: session.nick, key: session.key, since: cursor });
        response = await fetch('chat.php?' + query, { cache: 'no-store' });
        body = await response.json();
      } catch (err) {
        if (me !== session) return;
        setStatus('connection lost; retrying');
        await sleep(2000);
        continue;
      }
      if (me !== session) return;
      if (response.status === 410 || response.status === 403) return left('you are no longer in the chat');
      if (!response.ok) {
        setStatus(body.error || 'HTTP ' + response.status);
        await sleep(2000);
        continue;
      }
      setStatus('joined as ' + session.nick);
      // A poll's answer holds every event after our cursor, up to body.seq.
      cursor = Math.max(cursor, body.seq);
      apply(body);
    }
  }

  function joined(session, body) {
    me = session;
    me.joinedAt = body.seq;
    cursor = Math.max(0, body.seq - HISTORY);
    apply(body);
    $('join-form').hidden = true;
    $('send-form').hidden = false;
    $('leave').hidden = false;
    setStatus('joined as ' + me.nick);
    $('text').focus();
    pollLoop(me);
  }

  function left(reason) {
    me = null;
    $('join-form').hidden = false;
    $('send-form').hidden = true;
    $('leave').hidden = true;
    setStatus(reason);
  }

  $('nick').value = localStorage.getItem('m2bridge-chat-nick') || '';

  $('join-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const session = { nick: $('nick').value.trim(), key: randomKey() };
    try {
      const body = await post('join', session);
      localStorage.setItem('m2bridge-chat-nick', session.nick);
      joined(session, body);
    } catch (err) {
      setStatus(err.message);
    }
  });

  $('send-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    if (!me) return;
    const text = $('text').value;
    $('text').value = '';
    try {
      apply(await post('send', { nick: me.nick, key: me.key, text }));
    } catch (err) {
      $('text').value = text;
      setStatus(err.message);
    }
  });

  $('leave').addEventListener('click', async () => {
    if (!me) return;
    try {
      apply(await post('leave', { nick: me.nick, key: me.key }));
    } catch (err) {
      setStatus(err.message);
    }
  });
})();

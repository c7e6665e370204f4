<?php
// The chat's API: a plain PHP script for php-fpm that pushes to many browsers with one
// response, through m2bridge's X-Mongrel2-Deliver header (it never talks to ZeroMQ).
//
//   POST chat.php?action=join   {"nick":..., "key":...}           a nick joins
//   GET  chat.php?action=wait&nick=..&key=..&since=N               long poll for events after N
//   POST chat.php?action=send   {"nick":..., "key":..., "text":...}
//   POST chat.php?action=leave  {"nick":..., "key":...}
//   POST chat.php               {"type":"disconnect"}              from m2bridge --disconnect-path:
//                               the client on X_MONGREL2_CONN_ID has gone
//
// Every event gets a sequence number and stays in a short log. A poll that is behind is answered
// at once from the log; one that is up to date is held (an empty X-Mongrel2-Deliver) and its
// connection id is remembered for its nick. A new event is one response delivered to every held
// poll and to the requester. The client picks `key`, a secret that proves later requests come from
// whoever joined with the nick; it is stored hashed.

const LOG_LENGTH = 200;        // events kept for polls that are behind
const STALE_SECONDS = 60;      // a member with no poll held for this long has gone without a disconnect
const MAX_TEXT = 2000;

function state_dir(): string {
    // php-fpm pool: env[CHAT_STATE_DIR] = /some/dir (or a fastcgi_param of the same name).
    $dir = $_SERVER['CHAT_STATE_DIR'] ?? getenv('CHAT_STATE_DIR');
    if (!is_string($dir) || $dir === '') $dir = sys_get_temp_dir() . '/m2bridge-chat';
    if (!is_dir($dir) && !@mkdir($dir, 0700, true) && !is_dir($dir)) reply_error(500, "cannot create $dir");
    return $dir;
}

function reply_json(int $status, array $body, ?array $deliver_to = null): void {
    http_response_code($status);
    header('Content-Type: application/json');
    header('Cache-Control: no-store');
    if ($deliver_to !== null) header('X-Mongrel2-Deliver: ' . implode(' ', $deliver_to));
    echo json_encode($body, JSON_UNESCAPED_UNICODE | JSON_UNESCAPED_SLASHES), "\n";
}

function reply_error(int $status, string $message): never {
    reply_json($status, ['error' => $message]);
    exit;
}

// The whole state in one JSON file, read and written under an exclusive flock: several php-fpm
// workers run at once. The lock is held until the response has been handed to m2bridge (see
// finish()), so responses leave in the order the state changed.
final class Store {
    private $file;
    public array $state;

    public function __construct(string $dir) {
        $this->file = fopen("$dir/state.json", 'c+');
        if (!$this->file || !flock($this->file, LOCK_EX)) reply_error(500, 'cannot lock the chat state');
        $text = stream_get_contents($this->file);
        $state = $text ? json_decode($text, true) : null;
        $this->state = is_array($state) ? $state : ['seq' => 0, 'events' => [], 'members' => []];
    }

    public function save(): void {
        ftruncate($this->file, 0);
        rewind($this->file);
        fwrite($this->file, json_encode($this->state, JSON_UNESCAPED_UNICODE));
        fflush($this->file);
    }

    // Hands the response to m2bridge before the next worker may change the state: a poll's hold
    // then reaches m2bridge before any delivery that names its connection.
    public function finish(): void {
        if (function_exists('fastcgi_finish_request')) fastcgi_finish_request();
        flock($this->file, LOCK_UN);
        fclose($this->file);
    }
}

function add_event(array &$state, array $event): void {
    $event['seq'] = ++$state['seq'];
    $event['time'] = time();
    $state['events'][] = $event;
    $state['events'] = array_slice($state['events'], -LOG_LENGTH);
}

function remove_member(array &$state, string $nick, string $reason, array &$deliver_to): void {
    $member = $state['members'][$nick];
    // Its own held poll hears of it too, so a tab that pressed "leave" stops polling.
    if ($member['wait'] !== null) $deliver_to[] = $member['wait'];
    unset($state['members'][$nick]);
    add_event($state, ['type' => 'leave', 'nick' => $nick, 'reason' => $reason]);
}

// Members with no poll held for STALE_SECONDS closed their tab between two polls: nothing
// told us (no held connection, so no disconnect), so they are dropped here.
// Returns whether anyone was dropped (news for the others).
function remove_stale_members(array &$state): bool {
    $dropped = false;
    foreach ($state['members'] as $nick => $member) {
        if ($member['wait'] === null && $member['seen'] < time() - STALE_SECONDS) {
            $none_held = [];
            remove_member($state, (string)$nick, 'timed out', $none_held);
            $dropped = true;
        }
    }
    return $dropped;
}

function events_since(array $state, int $since): array {
    return array_values(array_filter($state['events'], fn($e) => $e['seq'] > $since));
}

function snapshot(array $state, int $since): array {
    $members = array_map('strval', array_keys($state['members']));
    sort($members, SORT_STRING | SORT_FLAG_CASE);
    return ['seq' => $state['seq'], 'members' => $members, 'events' => events_since($state, $since)];
}

// One response to every held poll (and whoever else is listed), then they are no longer held.
// The body carries every event after the oldest `since` among them; clients skip what they have.
function broadcast(Store $store, array $deliver_to, int $oldest_since): void {
    $state = &$store->state;
    foreach ($state['members'] as $nick => $member) {
        if ($member['wait'] === null) continue;
        $deliver_to[] = $member['wait'];
        $oldest_since = min($oldest_since, $member['since']);
        $state['members'][$nick]['wait'] = null;
        $state['members'][$nick]['seen'] = time();
    }
    $store->save();
    $deliver_to = array_values(array_unique(array_map('intval', $deliver_to)));
    if ($deliver_to) reply_json(200, snapshot($state, $oldest_since), $deliver_to);
    else http_response_code(204);
    $store->finish();
}

function request_json(): array {
    $body = json_decode(file_get_contents('php://input') ?: 'null', true);
    return is_array($body) ? $body : [];
}

function authenticated_nick(array $state, array $args): string {
    $nick = (string)($args['nick'] ?? '');
    $member = $state['members'][$nick] ?? null;
    if ($member === null) reply_error(410, 'not in the chat');
    if (!hash_equals($member['key'], hash('sha256', (string)($args['key'] ?? '')))) reply_error(403, 'wrong key');
    return $nick;
}

$method = $_SERVER['REQUEST_METHOD'] ?? 'GET';
$conn = (int)($_SERVER['X_MONGREL2_CONN_ID'] ?? 0);
$action = $_GET['action'] ?? '';
$body = $method === 'POST' ? request_json() : [];
if (($body['type'] ?? '') === 'disconnect') $action = 'disconnect';
// Mutating actions are POSTs so a link or a prefetch cannot trigger them.
$post_only = ['join', 'send', 'leave', 'disconnect'];
if (in_array($action, $post_only, true) && $method !== 'POST') reply_error(405, "$action needs POST");
if ($action === 'wait') $body = $_GET;
if ($conn <= 0 && in_array($action, ['wait', 'disconnect'], true))
    reply_error(500, 'no X_MONGREL2_CONN_ID: this app runs behind m2bridge');

$store = new Store(state_dir());
$state = &$store->state;
$deliver_to = [];
$seq_before = $state['seq'];  // deliveries carry every event from here on, the sweep's included
$swept = remove_stale_members($state);

switch ($action) {
    case 'join':
        $nick = trim((string)($body['nick'] ?? ''));
        $key = (string)($body['key'] ?? '');
        if (!preg_match('/^[\p{L}\p{N}_.\- ]{1,24}$/u', $nick)) reply_error(400, 'a nick is 1 to 24 letters, digits, spaces, _ . -');
        if (strlen($key) < 16) reply_error(400, 'key too short');
        if (isset($state['members'][$nick])) reply_error(409, "$nick is taken");
        $state['members'][$nick] = ['key' => hash('sha256', $key), 'wait' => null, 'since' => 0, 'seen' => time()];
        add_event($state, ['type' => 'join', 'nick' => $nick]);
        $deliver_to[] = $conn;
        broadcast($store, $deliver_to, $seq_before);
        break;

    case 'send':
        $nick = authenticated_nick($state, $body);
        $text = trim((string)($body['text'] ?? ''));
        if ($text === '' || strlen($text) > MAX_TEXT) reply_error(400, 'a message is 1 to ' . MAX_TEXT . ' bytes');
        $state['members'][$nick]['seen'] = time();
        add_event($state, ['type' => 'message', 'nick' => $nick, 'text' => $text]);
        $deliver_to[] = $conn;
        broadcast($store, $deliver_to, $seq_before);
        break;

    case 'leave':
        $nick = authenticated_nick($state, $body);
        remove_member($state, $nick, 'left', $deliver_to);
        $deliver_to[] = $conn;
        broadcast($store, $deliver_to, $seq_before);
        break;

    case 'disconnect':
        // The held poll on $conn is gone (tab closed): its member leaves. The gone connection
        // itself gets nothing; m2bridge discards this response's body for it anyway.
        $gone = $swept;
        foreach ($state['members'] as $nick => $member) {
            if ($member['wait'] === $conn) {
                $state['members'][$nick]['wait'] = null;
                remove_member($state, (string)$nick, 'disconnected', $deliver_to);
                $gone = true;
            }
        }
        // A connection nobody waited on (a stale or finished poll): no news, every poll stays held.
        if ($gone) broadcast($store, $deliver_to, $seq_before);
        else http_response_code(204);
        break;

    case 'wait':
        $nick = authenticated_nick($state, $body);
        $since = max(0, (int)($body['since'] ?? 0));
        $state['members'][$nick]['seen'] = time();
        $state['members'][$nick]['wait'] = null;
        if ($swept) {
            // The sweep made news for everyone who is waiting, and this poll is behind.
            $deliver_to[] = $conn;
            broadcast($store, $deliver_to, min($since, $seq_before));
            break;
        }
        if ($since < $state['seq']) {
            // Behind: events came while this client was between polls; answer it alone, now.
            $store->save();
            reply_json(200, snapshot($state, $since));
            $store->finish();
            break;
        }
        $state['members'][$nick]['wait'] = $conn;
        $state['members'][$nick]['since'] = $since;
        $store->save();
        header('X-Mongrel2-Deliver:');  // empty: answer nobody now, keep this connection open
        $store->finish();
        break;

    default:
        reply_error(404, 'unknown action');
}

<?php
// X-Mongrel2-Deliver to the ids in ?ids= (space separated, kept as given, duplicates too), the held
// ids recorded in ?dir=, ?extra= more ids counting up from ?from=, and (unless ?self=0) the requester.
// The body is ?body=, or ?size= bytes of a fixed pattern.
$ids = [];
if (isset($_GET['ids']) && $_GET['ids'] !== '') $ids = explode(' ', $_GET['ids']);
if (isset($_GET['dir'])) $ids = array_merge($ids, array_values(array_diff(scandir($_GET['dir']), ['.', '..'])));
$from = intval($_GET['from'] ?? 0);
for ($i = 0; $i < intval($_GET['extra'] ?? 0); $i++) $ids[] = (string)($from + $i);
if (($_GET['self'] ?? '1') !== '0') $ids[] = $_SERVER['X_MONGREL2_CONN_ID'];
header('X-Mongrel2-Deliver: ' . implode(' ', $ids));
header('Content-Type: text/plain');
if (isset($_GET['size'])) {
    $size = intval($_GET['size']);
    $block = str_repeat('0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ!?', 1024);
    $out = str_repeat($block, intdiv($size, strlen($block)) + 1);
    echo substr($out, 0, $size);
} else {
    echo $_GET['body'] ?? 'delivered';
}

<?php
// Streams: first "id=<this connection's id>\n", then ?n= lines "piece-<i>\n", one per ?ms= milliseconds.
header('Content-Type: text/plain');
echo 'id=' . $_SERVER['X_MONGREL2_CONN_ID'] . "\n";
flush();
$n = intval($_GET['n'] ?? 10);
$ms = intval($_GET['ms'] ?? 150);
for ($i = 0; $i < $n; $i++) {
    usleep($ms * 1000);
    echo "piece-$i\n";
    flush();
}

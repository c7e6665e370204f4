<?php
// Writes a dot every 100 ms for ?s= seconds; a closed connection stops it at the next flush.
header('Content-Type: text/plain');
$end = microtime(true) + intval($_GET['s'] ?? 20);
while (microtime(true) < $end) {
    echo '.';
    flush();
    usleep(100000);
}

<?php
// Which php-fpm pool answered (its env[POOL]); for the balancing tests.
header('Content-Type: text/plain');
echo getenv('POOL') ?: 'none';

package kvcore

// RaceEnabled is raceEnabled for the external tests (package kvcore_test).
const RaceEnabled = raceEnabled

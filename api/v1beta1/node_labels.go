package v1beta1

// LabelDrain on a Node puts it under planned maintenance for layer 2
// (kubectl barelb drain): its speaker hands the addresses it announces
// to other nodes, make-before-break, and is elected for none while the
// label is there, unless no other node may announce an address. Its
// value is free (the plugin writes "true"); removing the label
// (kubectl barelb undrain) makes the node a candidate again.
const LabelDrain = "barelb.io/drain"
